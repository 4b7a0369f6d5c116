"""The webhook queue (DLQ, partial batch failures) and the alarms and dashboard that watch everything."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk.stack import FUNCTIONS
from tests.cdk.conftest import Synth, render, synthesize


def _queues(synth: Synth) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """(queue, dead-letter queue), each as (logical id, properties)."""
    queues = synth.of_type("AWS::SQS::Queue")
    # The webhook queue: the standard queue with a DLQ (the ordered frames queue is FIFO, test_frames.py).
    [main_id] = [
        k for k, v in queues.items() if "RedrivePolicy" in v["Properties"] and not v["Properties"].get("FifoQueue")
    ]
    dlq_id = queues[main_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return (main_id, queues[main_id]["Properties"]), (dlq_id, queues[dlq_id]["Properties"])


def test_webhooks_queue_gives_up_into_a_dead_letter_queue_after_five_receives(either: Synth) -> None:
    (_, queue), (_, dlq) = _queues(either)
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["VisibilityTimeout"] == 6 * FUNCTIONS["webhooks"].timeout_seconds
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True


def test_webhook_queues_refuse_unencrypted_transport(either: Synth) -> None:
    (queue_id, _), (dlq_id, _) = _queues(either)
    for queue in (queue_id, dlq_id):
        [policy] = [
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in either.of_type("AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": queue}]
        ]
        assert {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.items() <= policy[0].items()


@pytest.fixture(scope="module")
def with_webhooks(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A stack one of whose apps has a webhook (the example apps file has none)."""
    apps = tmp_path_factory.mktemp("apps") / "apps.json"
    hook = {"url": "https://example.com/hooks", "event_types": ["channel_occupied"]}
    apps.write_text(json.dumps([{"id": "1", "key": "k1"}, {"id": "2", "key": "k2", "webhooks": [hook]}]))
    return synthesize({"apps_file": str(apps)})


def _worker_mapping(synth: Synth) -> dict[str, Any]:
    worker_id, _ = synth.function(FUNCTIONS["webhooks"].handler)
    _, mapping = synth.one("AWS::Lambda::EventSourceMapping", FunctionName={"Ref": worker_id})
    return dict(mapping["Properties"])


def test_the_worker_reports_partial_batch_failures_with_bounded_concurrency(with_webhooks: Synth) -> None:
    (queue_id, _), _ = _queues(with_webhooks)
    props = _worker_mapping(with_webhooks)
    assert props["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 10
    assert props["ScalingConfig"] == {"MaximumConcurrency": 10}
    assert props.get("Enabled", True) is True


def test_without_webhooks_the_worker_mapping_is_there_but_does_not_poll(either: Synth) -> None:
    """No app of the example apps file has webhooks: nothing is ever enqueued, and an enabled mapping would
    long-poll the queue all month (docs/cost.md). The mapping is kept, disabled, so giving an app webhooks
    is a redeploy that updates ``Enabled`` in place; the frames queue's mapping still polls."""
    assert not any(app.settings.get("webhooks") for app in either.stack.config.apps)
    props = _worker_mapping(either)
    assert props["Enabled"] is False
    assert (props["BatchSize"], props["ScalingConfig"]) == (10, {"MaximumConcurrency": 10})
    message_id, _ = either.function(FUNCTIONS["message"].handler)
    _, frames = either.one("AWS::Lambda::EventSourceMapping", FunctionName={"Ref": message_id})
    assert frames["Properties"].get("Enabled", True) is True


def _alarms(synth: Synth) -> list[dict[str, Any]]:
    return [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()]


def test_every_function_has_error_and_throttle_alarms(either: Synth) -> None:
    alarms = _alarms(either)
    for spec in FUNCTIONS.values():
        function_id, _ = either.function(spec.handler)
        for metric in ("Errors", "Throttles"):
            [alarm] = [
                a
                for a in alarms
                if a.get("MetricName") == metric
                and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
            ]
            assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
            assert alarm["TreatMissingData"] == "notBreaching"


def test_dead_letters_a_deep_queue_and_a_stale_backlog_raise_alarms(either: Synth) -> None:
    (queue_id, _), (dlq_id, _) = _queues(either)
    alarms = {
        (a["MetricName"], render(a["Dimensions"][0]["Value"])): a
        for a in _alarms(either)
        if a["Namespace"] == "AWS/SQS"
    }
    dlq_alarm = alarms[("ApproximateNumberOfMessagesVisible", f"<{dlq_id}.QueueName>")]
    assert dlq_alarm["Threshold"] == 1
    backlog = alarms[("ApproximateAgeOfOldestMessage", f"<{queue_id}.QueueName>")]
    assert backlog["Threshold"] == 300
    depth = alarms[("ApproximateNumberOfMessagesVisible", f"<{queue_id}.QueueName>")]
    assert depth["Threshold"] == 1000


def test_every_alarm_notifies_the_alarm_topic(either: Synth) -> None:
    topic_id, _ = either.one("AWS::SNS::Topic")
    for alarm in _alarms(either):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_an_email_can_subscribe_to_alarms_at_deploy_time() -> None:
    synth = synthesize({"alarm_email": "ops@example.com"})
    topic_id, _ = synth.one("AWS::SNS::Topic")
    synth.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": {"Ref": topic_id}}
    )


def test_the_dashboard_shows_the_apis_the_functions_and_the_queue(either: Synth) -> None:
    _, dashboard = either.one("AWS::CloudWatch::Dashboard")
    body = render(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "ConnectCount",
        "MessageCount",
        "IntegrationError",
        "Invocations",
        "Throttles",
        "Duration",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
    ):
        assert f'"{metric}"' in body, metric
    for spec in FUNCTIONS.values():
        function_id, _ = either.function(spec.handler)
        assert f"<{function_id}>" in body
    assert '"alarm"' in body  # the alarm status widget


def test_the_lean_stack_has_no_alarms_dashboard_metrics_info_logs_or_access_logs() -> None:
    """-c monitoring=false -c metrics=false -c log_level=WARNING -c access_logs=false: what docs/cost.md's
    targets are read from."""
    lean = synthesize({"monitoring": "false", "metrics": "false", "log_level": "WARNING", "access_logs": "false"})
    stages = [s["Properties"] for s in lean.of_type("AWS::ApiGatewayV2::Stage").values()]
    assert len(stages) == 2 and not any("AccessLogSettings" in s for s in stages)
    # Only the functions' log groups, and no account-wide API Gateway logging role (access logs needed it).
    assert len(lean.of_type("AWS::Logs::LogGroup")) == len(FUNCTIONS)
    assert lean.of_type("AWS::ApiGateway::Account") == {}
    assert lean.of_type("AWS::CloudWatch::Alarm") == {}
    assert lean.of_type("AWS::CloudWatch::Dashboard") == {}
    assert "DashboardUrl" not in lean.json["Outputs"]
    _, function = lean.function("functions.message.handler.handler")
    env = function["Properties"]["Environment"]["Variables"]
    assert (env["POWERTOOLS_METRICS_DISABLED"], env["POWERTOOLS_LOG_LEVEL"]) == ("true", "WARNING")
    logging = function["Properties"]["LoggingConfig"]
    assert (logging["LogFormat"], logging["SystemLogLevel"]) == ("JSON", "WARN")


def test_a_budget_emails_the_alarm_address_before_and_when_it_is_spent() -> None:
    synth = synthesize({"budget_usd": "60", "alarm_email": "ops@example.com"})
    _, budget = synth.one("AWS::Budgets::Budget")
    props = budget["Properties"]
    assert props["Budget"]["BudgetLimit"] == {"Amount": 60, "Unit": "USD"}
    kinds = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in props["NotificationsWithSubscribers"]
    }
    assert kinds == {("FORECASTED", 80), ("ACTUAL", 100)}
    assert all(
        n["Subscribers"] == [{"SubscriptionType": "EMAIL", "Address": "ops@example.com"}]
        for n in props["NotificationsWithSubscribers"]
    )
