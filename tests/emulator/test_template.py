"""The emulator takes its configuration from the synthesized template, and only from there.

These read the template ``cdk synth`` produces for the stack in this checkout (``local_server/emulator/
synth.py``, cached by source hash) and check that what the emulator would run is what the stack says:
the same handlers, memory, timeouts, reserved concurrency, async-invoke settings, routes (the MOCK ping
route with its templates), the event source mapping and the schedule; and that each function's
environment is its own, not the union of all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from cdk.components.webhooks import BATCH_SIZE, MAX_RECEIVES
from cdk.stack import FUNCTIONS
from local_server.emulator import aws, synth
from local_server.emulator.iam import allowed
from local_server.emulator.server import handlers_line
from local_server.emulator.template import Deployment, Endpoints, load
from shared.protocol import frames

ENDPOINTS = Endpoints(moto_url="http://moto.test:1", aws_url="http://aws.test:2")
APPS = json.dumps([{"id": "1", "key": "k", "secret": "s"}])


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    data, _path = synth.template()
    return data


@pytest.fixture(scope="module")
def deployment(template: dict[str, Any]) -> Deployment:
    return load(template, ENDPOINTS, APPS)


def test_every_function_runs_the_stacks_handler_with_its_memory_timeout_and_concurrency(
    deployment: Deployment,
) -> None:
    assert sorted(f.handler for f in deployment.functions.values()) == sorted(s.handler for s in FUNCTIONS.values())
    for spec in FUNCTIONS.values():
        function = deployment.function_by_handler(spec.handler)
        assert (function.memory_mb, function.timeout_seconds) == (spec.memory_mb, spec.timeout_seconds)
    assert deployment.function_by_handler(FUNCTIONS["fanout"].handler).reserved_concurrency == 50
    for name, spec in FUNCTIONS.items():
        asynchronous = deployment.function_by_handler(spec.handler).asynchronous
        if spec.asynchronous:
            # cdk/stack.py: throttled fan-out chunks wait up to 5 minutes, welcomes 1 (issue 14, defect 8).
            expected_age = 300.0 if name == "fanout" else 60.0
            assert (asynchronous.max_retries, asynchronous.max_event_age) == (0, expected_age), name
        else:
            assert (asynchronous.max_retries, asynchronous.max_event_age) == (2, 6 * 3600.0), name


def test_the_templates_runtime_is_read_and_the_banner_says_the_handlers_run_under_this_python(
    deployment: Deployment,
) -> None:
    """The emulator accepts whatever Runtime the template deploys (python3.13) and runs every handler in its
    own process under its own Python: the start-up banner names both, and the handlers see the template's
    runtime in ``AWS_EXECUTION_ENV`` as on AWS."""
    assert {f.runtime for f in deployment.functions.values()} == {"python3.13"}
    here = ".".join(map(str, sys.version_info[:3]))
    assert handlers_line(deployment.functions.values()) == (
        f"run in this process under Python {here} (the template deploys python3.13)"
    )
    connect = deployment.function_by_handler(FUNCTIONS["connect"].handler)
    assert aws.function_environment(connect, deployment, "AKIA", {})["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"


def test_each_function_gets_its_own_environment_resolved_to_the_emulators_endpoints(deployment: Deployment) -> None:
    connect = deployment.function_by_handler(FUNCTIONS["connect"].handler)
    message = deployment.function_by_handler(FUNCTIONS["message"].handler)
    welcome = deployment.function_by_handler(FUNCTIONS["welcome"].handler)
    fanout = deployment.function_by_handler(FUNCTIONS["fanout"].handler)
    # What the template gives a function, the emulator gives it; what it does not, it does not invent.
    assert "SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL" not in connect.environment
    assert message.environment["SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL"] == f"{ENDPOINTS.aws_url}/prod"
    assert connect.environment["SOCKLESS_AWS__WELCOME_FUNCTION"] == welcome.name
    assert message.environment["SOCKLESS_AWS__FANOUT_FUNCTION"] == fanout.name
    [table] = deployment.tables
    assert message.environment["SOCKLESS_STORE__TABLE_NAME"] == table.name
    [queue] = [q for q in deployment.queues.values() if "RedrivePolicy" in q.attributes and ".fifo" not in q.name]
    assert message.environment["SOCKLESS_QUEUE__QUEUE_URL"] == queue.url and queue.url.startswith(ENDPOINTS.moto_url)
    assert message.environment["SOCKLESS_APPS"] == APPS


def test_routes_follow_the_template_and_ping_is_a_two_way_mock_answering_the_engines_pong(
    deployment: Deployment,
) -> None:
    websocket = deployment.websocket
    assert websocket.route_selection == "$request.body.event" and websocket.stage == "prod"
    assert {key: r.type for key, r in websocket.routes.items()} == {
        "$connect": "AWS_PROXY",
        "$disconnect": "AWS_PROXY",
        "$default": "AWS",  # the ordered frames queue (cdk/components/frames.py)
        "pusher:ping": "MOCK",
    }
    frames_queue = next(
        q for q in deployment.queues.values() if q.name.endswith(".fifo") and "RedrivePolicy" in q.attributes
    )
    assert websocket.routes["$default"].uri == f"arn:aws:apigateway:us-east-1:sqs:path/123456789012/{frames_queue.name}"
    ping = websocket.routes["pusher:ping"]
    assert "pusher:ping" in websocket.two_way_routes
    assert json.loads(ping.request_templates["$default"]) == {"statusCode": 200}
    assert ping.response_templates["$default"].encode() == frames.PONG
    assert (
        deployment.http.routes["$default"].function
        == deployment.function_by_handler(FUNCTIONS["http_api"].handler).name
    )


def test_the_queue_mapping_and_schedule_are_the_templates(deployment: Deployment) -> None:
    by_function = {m.function: m for m in deployment.mappings}
    message = by_function[deployment.function_by_handler(FUNCTIONS["message"].handler).name]
    assert deployment.queues[message.queue_arn].name.endswith(".fifo")  # the ordered frames queue
    mapping = by_function[deployment.function_by_handler(FUNCTIONS["webhooks"].handler).name]
    assert (mapping.batch_size, mapping.report_batch_item_failures) == (BATCH_SIZE, True)
    queue = deployment.queues[mapping.queue_arn]
    redrive = json.loads(queue.attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == MAX_RECEIVES and redrive["deadLetterTargetArn"] in deployment.queues
    assert int(queue.attributes["VisibilityTimeout"]) == 6 * FUNCTIONS["webhooks"].timeout_seconds
    [schedule] = deployment.schedules
    assert schedule.function == deployment.function_by_handler(FUNCTIONS["sweep"].handler).name
    assert schedule.seconds == 60.0


def test_role_statements_are_resolved_to_the_emulators_arns(deployment: Deployment) -> None:
    message = deployment.function_by_handler(FUNCTIONS["message"].handler)
    [table] = deployment.tables
    assert allowed(message.statements, "dynamodb:GetItem", table.arn)
    assert not allowed(message.statements, "dynamodb:Scan", table.arn)
    connection = f"arn:aws:execute-api:us-east-1:123456789012:{deployment.websocket.id}/prod/POST/@connections/abc="
    assert allowed(message.statements, "execute-api:ManageConnections", connection)
    connect = deployment.function_by_handler(FUNCTIONS["connect"].handler)
    assert not allowed(connect.statements, "execute-api:ManageConnections", connection)


def test_the_synth_is_reused_while_the_sources_are_unchanged(tmp_path: Any) -> None:
    # The cache key covers the context: another context is another template file.
    assert synth.source_hash({}) == synth.source_hash({})
    assert synth.source_hash({"stage_name": "v1"}) != synth.source_hash({})


def test_only_the_webhook_queues_reader_is_where_lambda_webhook_targets_are_granted(deployment: Deployment) -> None:
    # The stack grants lambda:InvokeFunction on the apps' webhook targets to the webhooks function alone
    # (SocklessStack._grant_webhook_lambda_targets); the frames queue's reader must not get it too.
    assert deployment.webhook_workers() == {deployment.function_by_handler(FUNCTIONS["webhooks"].handler).name}
    readers = {m.function for m in deployment.mappings}
    assert deployment.function_by_handler(FUNCTIONS["message"].handler).name in readers


def test_the_webhook_queue_is_polled_only_when_the_configs_apps_have_webhooks(deployment: Deployment) -> None:
    # The template comes from the example apps file, which has no webhooks: the stack disables the worker's
    # mapping (no idle long polls, docs/cost.md). The emulator's apps are its config's, so the stack's rule is
    # applied to them: with a webhook the worker polls, as a stack deployed with those apps would.
    worker = deployment.function_by_handler(FUNCTIONS["webhooks"].handler).name
    message = deployment.function_by_handler(FUNCTIONS["message"].handler).name
    [disabled] = [m for m in deployment.mappings if not m.enabled]
    assert disabled.function == worker
    assert {m.function for m in deployment.polling(webhooks=False)} == {message}
    assert {m.function for m in deployment.polling(webhooks=True)} == {message, worker}


def test_the_stages_access_logs_are_read_from_the_template(template: dict[str, Any]) -> None:
    # The emulator's meter bills access-log bytes only when the stages write them (-c access_logs=false).
    deployment = load(template, ENDPOINTS, APPS)
    assert deployment.websocket.access_logs and deployment.http.access_logs
    stripped = json.loads(json.dumps(template))
    for resource in stripped["Resources"].values():
        if resource["Type"] == "AWS::ApiGatewayV2::Stage":
            resource["Properties"].pop("AccessLogSettings", None)
    bare = load(stripped, ENDPOINTS, APPS)
    assert not bare.websocket.access_logs and not bare.http.access_logs


def test_functions_get_the_configs_apps_and_no_place_to_read_secrets_from(deployment: Deployment) -> None:
    # The config's apps carry their secrets; APP_SECRETS would send the functions to Secrets Manager or SSM.
    for function in deployment.functions.values():
        if "SOCKLESS_APPS" in function.environment:
            assert json.loads(function.environment["SOCKLESS_APPS"]) == json.loads(APPS)
        assert "APP_SECRETS" not in function.environment
    assert not any("APP_SECRETS" in note for note in deployment.notes)
