"""``cdk synth`` / ``cdk deploy`` entry point (cdk.json: ``python -m cdk.app``).

Options come from CDK context (``-c store=valkey -c apps_file=apps.json ...``; see cdk/config.py and
docs/deploy.md). cdk-nag's AwsSolutions checks run on every synth: an unacknowledged error fails it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk.config import ConfigError, DeployConfig, from_context
from cdk.stack import SocklessStack

DEFAULT_STACK_NAME = "sockless"
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (feature flags): the CLI passes it to the app, an in-process synth must read it."""
    return dict(json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {}))


def build_app(
    context: Mapping[str, Any] | None = None, *, nag: bool = True, require_apps_file: bool = False
) -> tuple[cdk.App, SocklessStack]:
    """The app and its one stack. ``context`` (tests) goes over cdk.json's; the CLI's ``-c`` wins over both.

    ``require_apps_file`` (``cdk synth``/``cdk deploy``, through :func:`main`): without ``-c apps_file=...``
    the example app (whose key is in this repository) would be deployed; refuse unless ``-c
    example_apps=true`` asks for it (#18 item 6)."""
    app = cdk.App(context={**cdk_json_context(), **(context or {})})
    example_asked = str(app.node.try_get_context("example_apps")).lower() in ("true", "1", "yes")
    if require_apps_file and not app.node.try_get_context("apps_file") and not example_asked:
        raise ConfigError(
            "no apps file: create one (docs/deploy.md, 'Apps') and deploy with -c apps_file=apps.json; "
            "to deploy the example app of cdk/apps.example.json (a public key), add -c example_apps=true"
        )
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


def main() -> int:
    """A refused option is one line naming it (the CLI adds "subprocess exited with error 2"), not a traceback."""
    try:
        app, _ = build_app(require_apps_file=True)
    except ConfigError as exc:
        print(f"sockless: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
