"""Least privilege: each function's role holds what that function does and nothing on anything else."""

from __future__ import annotations

from typing import Any

import pytest

from cdk.stack import FUNCTIONS
from tests.cdk.conftest import Synth, render, synthesize

HANDLERS = {name: spec.handler for name, spec in FUNCTIONS.items()}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _granted(synth: Synth, name: str, action: str) -> list[Any]:
    return [r for s in synth.statements(HANDLERS[name]) if action in _actions(s) for r in _resources(s)]


def test_manage_connections_is_granted_on_this_apis_stage_only(either: Synth) -> None:
    api_id, _ = either.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    for name, spec in FUNCTIONS.items():
        resources = [render(r) for r in _granted(either, name, "execute-api:ManageConnections")]
        if spec.posts:
            assert resources == [
                f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{api_id}>/prod/*/@connections/*"
            ], name
        else:
            assert resources == [], name


def test_no_function_may_invoke_the_api_or_do_anything_with_any_other_api(either: Synth) -> None:
    for name in FUNCTIONS:
        for statement in either.statements(HANDLERS[name]):
            assert "execute-api:Invoke" not in _actions(statement), name
            assert not any(a.endswith(":*") or a == "*" for a in _actions(statement)), (name, statement)


def test_invoke_grants_name_the_exact_function(either: Synth) -> None:
    welcome_id, _ = either.function(HANDLERS["welcome"])
    fanout_id, _ = either.function(HANDLERS["fanout"])
    assert _granted(either, "connect", "lambda:InvokeFunction") == [{"Fn::GetAtt": [welcome_id, "Arn"]}]
    for name, spec in FUNCTIONS.items():
        if spec.fans_out:
            assert _granted(either, name, "lambda:InvokeFunction") == [{"Fn::GetAtt": [fanout_id, "Arn"]}], name
    # No qualifier wildcard (grant_invoke's ":*"): only the unqualified function is invoked.
    for name in FUNCTIONS:
        assert not any(":*" in render(r) for r in _granted(either, name, "lambda:InvokeFunction")), name


def test_store_access_is_data_actions_on_the_one_table(dynamodb: Synth) -> None:
    table_id, _ = dynamodb.one("AWS::DynamoDB::GlobalTable")
    for name in FUNCTIONS:
        statements = [s for s in dynamodb.statements(HANDLERS[name]) if _actions(s)[0].startswith("dynamodb:")]
        assert len(statements) == 1, name
        assert _resources(statements[0]) == [{"Fn::GetAtt": [table_id, "Arn"]}]
        assert not {"dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:UpdateTable"} & set(_actions(statements[0]))


def test_only_the_functions_that_emit_webhooks_may_send_to_the_queue(either: Synth) -> None:
    queue_id = next(
        k
        for k, v in either.of_type("AWS::SQS::Queue").items()
        if "RedrivePolicy" in v["Properties"] and not v["Properties"].get("FifoQueue")  # not the frames queue
    )
    failures_id = either.logical_id(either.stack.async_failures)
    for name, spec in FUNCTIONS.items():
        resources = [r for r in _granted(either, name, "sqs:SendMessage") if r != {"Fn::GetAtt": [failures_id, "Arn"]}]
        assert resources == ([{"Fn::GetAtt": [queue_id, "Arn"]}] if spec.enqueues else []), name


def test_only_the_asynchronous_functions_may_send_to_their_failure_queue(either: Synth) -> None:
    """Lambda sends a dropped asynchronous event to the on-failure destination with the function's role."""
    failures = {"Fn::GetAtt": [either.logical_id(either.stack.async_failures), "Arn"]}
    for name, spec in FUNCTIONS.items():
        assert (failures in _granted(either, name, "sqs:SendMessage")) is spec.asynchronous, name


def test_function_roles_use_no_aws_managed_policies(either: Synth) -> None:
    for handler in HANDLERS.values():
        role = either.resources[either.role_of(handler)]
        assert "ManagedPolicyArns" not in role["Properties"], handler
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"
        }


def test_wildcard_resources_are_only_lambdas_network_interface_actions(either: Synth) -> None:
    for handler in HANDLERS.values():
        for statement in either.statements(handler):
            if "*" in _resources(statement):
                assert either.stack.config.store == "valkey", handler
                for action in _actions(statement):
                    assert action.startswith("ec2:"), statement
                    assert (
                        "NetworkInterface" in action
                        or "PrivateIpAddresses" in action
                        or action == "ec2:DescribeSubnets"
                    )


@pytest.fixture(scope="module")
def with_lambda_webhooks(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    apps = tmp_path_factory.mktemp("apps") / "apps.json"
    apps.write_text(
        '[{"id": "1", "key": "k1", "webhooks": [{"lambda_function": "audit-hook"}]},'
        ' {"id": "2", "key": "k2", "webhooks": [{"lambda": {"function_name": "other", "region": "eu-west-1"}},'
        ' {"url": "https://example.com/hook"}]}]'
    )
    return synthesize({"apps_file": str(apps)})


def test_the_webhook_worker_may_invoke_exactly_the_lambda_targets_apps_name(with_lambda_webhooks: Synth) -> None:
    resources = sorted(render(r) for r in _granted(with_lambda_webhooks, "webhooks", "lambda:InvokeFunction"))
    assert resources == [
        "arn:<AWS::Partition>:lambda:eu-west-1:<AWS::AccountId>:function:other",
        "arn:<AWS::Partition>:lambda:us-east-1:<AWS::AccountId>:function:audit-hook",
    ]
    assert _granted(with_lambda_webhooks, "message", "lambda:InvokeFunction") != resources
