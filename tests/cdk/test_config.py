"""Deploy options: each context value is parsed once, and a wrong one fails the synth with its name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdk.components.functions import RETENTION
from cdk.config import DEFAULT_APPS_FILE, LOG_RETENTION_DAYS, ConfigError, DeployConfig, from_context

ROOT = Path(__file__).resolve().parents[2]


def _config(**context: Any) -> DeployConfig:
    return from_context(context.get)


def test_defaults_deploy_dynamodb_with_the_example_app() -> None:
    config = _config()
    assert (config.store, config.ping_route, config.stage_name) == ("dynamodb", "mock", "prod")
    assert [app.key for app in config.apps] == ["sockless-app-key"]
    assert DEFAULT_APPS_FILE.is_file()


def test_command_line_strings_are_parsed() -> None:
    config = _config(
        store="valkey", apigw_logging_role="false", fanout_reserved_concurrency="0", log_retention_days="7"
    )
    assert config.store == "valkey"
    assert config.apigw_logging_role is False
    assert config.fanout_reserved_concurrency == 0
    assert config.log_retention_days == 7


@pytest.mark.parametrize(
    ("context", "message"),
    [
        pytest.param({"store": "redis"}, "'store' must be one of dynamodb, valkey", id="store"),
        pytest.param({"ping_route": "none"}, "'ping_route'", id="ping-route"),
        pytest.param({"apigw_logging_role": "maybe"}, "'apigw_logging_role' must be true or false", id="flag"),
        pytest.param({"stage_throttle_rate": "fast"}, "'stage_throttle_rate' must be an integer", id="integer"),
        pytest.param({"webhooks_max_concurrency": 1}, "'webhooks_max_concurrency' must be >= 2", id="minimum"),
        pytest.param({"log_retention_days": 4}, "'log_retention_days' must be one of", id="retention"),
        pytest.param({"stage_name": "prod/v2"}, "'stage_name'", id="stage-name"),
        pytest.param({"domain_name": "ws.example.com"}, "'certificate_arn' go together", id="domain-without-cert"),
        pytest.param({"apps_file": "/nonexistent/apps.json"}, "cannot read apps file", id="apps-file"),
    ],
)
def test_a_wrong_option_fails_with_its_name(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**context)


def test_every_allowed_retention_has_a_cloudwatch_value() -> None:
    assert tuple(sorted(RETENTION)) == LOG_RETENTION_DAYS


def test_cdk_synth_refuses_the_example_apps_unless_asked_for() -> None:
    """#18 item 6: ``cdk synth``/``cdk deploy`` without ``-c apps_file`` would deploy the example app."""
    from cdk.app import build_app

    with pytest.raises(ConfigError, match="no apps file"):
        build_app({"aws:cdk:bundling-stacks": []}, nag=False, require_apps_file=True)
    _, stack = build_app({"aws:cdk:bundling-stacks": [], "example_apps": "true"}, nag=False, require_apps_file=True)
    assert [entry.key for entry in stack.config.apps] == ["sockless-app-key"]


def test_cdk_synth_without_an_apps_file_says_so_in_one_line() -> None:
    """What ``make synth`` / ``cdk deploy`` show: the app (cdk.json's ``python -m cdk.app``) refuses in one line
    naming both ways out, exit 2, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "SOCKLESS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "cdk.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("sockless: no apps file") and "-c apps_file=" in line and "-c example_apps=true" in line
