"""The AWS CDK app that deploys sockless: one stack, one construct per concern (``cdk/components/``)."""

from __future__ import annotations

import os

# jsii prints a large Node end-of-life banner on every start unless told not to (docs/sources.md#tooling).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
