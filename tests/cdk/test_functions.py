"""The Lambda functions: entry points that exist, runtime and sizing, logs, async behaviour, and an
environment that the handlers' own settings model accepts."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import pytest
from aws_cdk.assertions import Match

from cdk.stack import FUNCTIONS
from functions.app_secrets import apps_with_secrets
from shared.settings import Settings, load_settings
from tests.cdk.conftest import Synth, render, synthesize

HANDLERS = {name: spec.handler for name, spec in FUNCTIONS.items()}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_handler_is_a_callable_in_the_functions_package(name: str) -> None:
    module, _, attribute = FUNCTIONS[name].handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_deployed_function_has_a_folder_of_its_own_named_as_in_the_stack(name: str) -> None:
    """Where a function lives is obvious from its name in the stack: functions/<name>/handler.py, entry
    point ``handler``; no folder holds a second deployed function."""
    assert FUNCTIONS[name].handler == f"functions.{name}.handler.handler"


def test_the_deployment_has_the_functions_of_the_aws_design(either: Synth) -> None:
    deployed = {f["Properties"]["Handler"] for f in either.of_type("AWS::Lambda::Function").values()}
    # CDK's own helpers (e.g. the VPC default-security-group restriction) are not sockless functions.
    assert set(HANDLERS.values()) <= deployed
    assert len(deployed - set(HANDLERS.values())) == (1 if either.stack.config.store == "valkey" else 0)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_run_python_3_13_on_arm64_with_their_sizing(dynamodb: Synth, name: str) -> None:
    spec = FUNCTIONS[name]
    _, function = dynamodb.function(spec.handler)
    props = function["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_seconds


def test_all_functions_share_one_code_asset(either: Synth) -> None:
    keys = {json.dumps(either.function(h)[1]["Properties"]["Code"], sort_keys=True) for h in HANDLERS.values()}
    assert len(keys) == 1


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_logs_to_its_own_group_with_retention(dynamodb: Synth, name: str) -> None:
    _, function = dynamodb.function(HANDLERS[name])
    group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert dynamodb.resources[group]["Properties"]["RetentionInDays"] == 30
    # ...and may write there, and nowhere else.
    [logs] = [s for s in dynamodb.statements(HANDLERS[name]) if str(s["Action"]).startswith("['logs:")]
    assert logs["Resource"] == {"Fn::GetAtt": [group, "Arn"]}


def test_log_retention_is_a_deploy_option() -> None:
    synth = synthesize({"log_retention_days": 7})
    retentions = {g["Properties"].get("RetentionInDays") for g in synth.of_type("AWS::Logs::LogGroup").values()}
    assert retentions == {7}


@pytest.mark.parametrize(("name", "max_age"), [("welcome", 60), ("fanout", 300)])
def test_asynchronous_functions_retry_inside_the_invocation_and_send_what_is_dropped_to_a_queue(
    dynamodb: Synth, name: str, max_age: int
) -> None:
    """No Lambda retry after an error (a minute later is useless for a welcome and a duplicate for a chunk);
    a throttled event waits up to its maximum age, then goes to the AsyncFailures queue (#14 defect 8)."""
    function_id, _ = dynamodb.function(HANDLERS[name])
    _, config = dynamodb.one("AWS::Lambda::EventInvokeConfig", FunctionName={"Ref": function_id})
    props = config["Properties"]
    assert (props["MaximumRetryAttempts"], props["MaximumEventAgeInSeconds"]) == (0, max_age)
    queue_id = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert dynamodb.resources[queue_id]["Type"] == "AWS::SQS::Queue"
    assert dynamodb.resources[queue_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    dynamodb.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "MetricName": "AsyncEventsDropped",
                "Namespace": "AWS/Lambda",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function_id}}],
            }
        ),
    )
    dynamodb.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
            }
        ),
    )


def test_fanout_has_reserved_concurrency_so_a_runaway_cannot_starve_the_account(dynamodb: Synth) -> None:
    reserved = {
        f["Properties"]["Handler"]: f["Properties"].get("ReservedConcurrentExecutions")
        for f in dynamodb.of_type("AWS::Lambda::Function").values()
    }
    assert reserved.pop(HANDLERS["fanout"]) == 50
    assert set(reserved.values()) == {None}


def test_fanout_reservation_can_be_changed_or_dropped_for_small_accounts() -> None:
    synth = synthesize({"fanout_reserved_concurrency": 0})
    _, fanout = synth.function(HANDLERS["fanout"])
    assert "ReservedConcurrentExecutions" not in fanout["Properties"]


def test_the_sweep_runs_every_minute(either: Synth) -> None:
    function_id, _ = either.function(HANDLERS["sweep"])
    _, rule = either.one("AWS::Events::Rule", ScheduleExpression="rate(1 minute)")
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0


class _SecretsManager:
    """Answers GetSecretValue with a fixed secret: the settings need one, this test is about the rest."""

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        return {"SecretString": "secret"}


def _settings_from(environment: dict[str, Any]) -> Settings:
    """Build the handlers' Settings from a function's environment as Lambda would hand it over, the way
    functions/runtime.py does (app secrets read from where ``APP_SECRETS`` says)."""
    variables = {name: render(value) for name, value in environment.items()}
    apps = apps_with_secrets(variables, lambda service: _SecretsManager())
    assert apps is not None
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SOCKLESS_")]:
            patch.delenv(name)
        for name, value in variables.items():
            patch.setenv(name, value)
        return load_settings(None, apps=apps)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_environment_is_exactly_what_the_handlers_settings_accept(either: Synth, name: str) -> None:
    """shared/settings.py forbids unknown keys: a misspelt or stale variable fails the handler at its first
    invocation. Every function's environment must load, with the drivers the variant implies."""
    settings = _settings_from(either.environment(HANDLERS[name]))
    if either.stack.config.store == "valkey":
        assert settings.store.driver == "redis"
        assert settings.store.url is not None and settings.store.url.startswith("rediss://")
    else:
        assert settings.store.driver == "dynamodb"
        assert settings.store.table_name is not None
    assert settings.queue.driver == "sqs"
    assert [app.key for app in settings.apps] == ["sockless-app-key"]


def test_functions_that_post_know_the_management_endpoint_not_the_cloudfront_host(either: Synth) -> None:
    api_id, _ = either.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    for name, spec in FUNCTIONS.items():
        env = either.environment(spec.handler)
        if spec.posts:
            assert render(env["SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL"]) == (
                f"https://<{api_id}>.execute-api.<AWS::Region>.<AWS::URLSuffix>/prod"
            )
        else:
            assert "SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL" not in env, name


def test_connect_knows_the_welcome_function_and_broadcasters_the_fanout(either: Synth) -> None:
    welcome_id, _ = either.function(HANDLERS["welcome"])
    fanout_id, _ = either.function(HANDLERS["fanout"])
    assert either.environment(HANDLERS["connect"])["SOCKLESS_AWS__WELCOME_FUNCTION"] == {"Ref": welcome_id}
    for name, spec in FUNCTIONS.items():
        env = either.environment(spec.handler)
        assert (env.get("SOCKLESS_AWS__FANOUT_FUNCTION") == {"Ref": fanout_id}) is spec.fans_out, name


def test_powertools_logs_and_metrics_are_named_like_the_handlers_metrics(either: Synth) -> None:
    from functions.observability import NAMESPACE

    for handler in HANDLERS.values():
        env = either.environment(handler)
        assert env["POWERTOOLS_SERVICE_NAME"] == "sockless"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
