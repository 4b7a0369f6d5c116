"""``cdk synth`` / ``cdk deploy`` entry point (cdk.json: ``python -m cdk.app``).

Options come from CDK context (``-c store=valkey -c apps_file=apps.json ...``; see cdk/config.py and
docs/deploy.md). cdk-nag's AwsSolutions checks run on every synth: an unacknowledged error fails it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk.config import DeployConfig, from_context
from cdk.stack import SocklessStack

DEFAULT_STACK_NAME = "sockless"
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (feature flags): the CLI passes it to the app, an in-process synth must read it."""
    return dict(json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {}))


def build_app(context: Mapping[str, Any] | None = None, *, nag: bool = True) -> tuple[cdk.App, SocklessStack]:
    """The app and its one stack. ``context`` (tests) goes over cdk.json's; the CLI's ``-c`` wins over both."""
    app = cdk.App(context={**cdk_json_context(), **(context or {})})
    config: DeployConfig = from_context(app.node.try_get_context)
    stack_name = app.node.try_get_context("stack_name") or DEFAULT_STACK_NAME
    stack = SocklessStack(
        app,
        "Sockless",
        stack_name=stack_name,
        config=config,
        description="sockless: a Pusher Channels compatible service on API Gateway WebSocket + Lambda",
        # Region/account from the CLI's profile when deploying; environment-agnostic otherwise (synth
        # never looks anything up, so it works offline).
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
