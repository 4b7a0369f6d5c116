"""CDK assertion tests. jsii prints a Node end-of-life banner on start unless told not to
(docs/sources.md#tooling); this must be set before anything imports aws_cdk."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
