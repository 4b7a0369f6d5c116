"""Alarms (function errors and throttles, webhook backlog and dead letters) and one CloudWatch dashboard.

Every alarm notifies one SNS topic; subscribe to it with ``-c alarm_email=...`` or afterwards. Thresholds
are deliberately low: in sockless any Lambda error is a frame some client did not get, and any throttle
is a connect or a publish that failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

FIVE_MINUTES = cdk.Duration.minutes(5)
# A webhook older than this has missed Pusher's delivery window (retries stop after 5 minutes).
WEBHOOK_AGE_ALARM_SECONDS = 300
# Queued webhooks that say the workers (or the endpoints they call) are falling behind.
WEBHOOK_DEPTH_ALARM = 1000
# The namespace functions/observability.py publishes the engine's EMF metrics under (a test keeps them equal).
POWERTOOLS_NAMESPACE = "sockless"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.Function],
        webhook_queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
        async_failures: sqs.IQueue,
        asynchronous: Sequence[str],
        websocket_api: apigwv2.WebSocketApi,
        websocket_stage: str,
        rest_api: apigwv2.HttpApi,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="sockless alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []

        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                f"sockless {name}: the function raised (a client or webhook may have missed a frame)",
            )
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                f"sockless {name}: invocations throttled (concurrency limit reached)",
            )
        for name in asynchronous:
            self._alarm(
                f"{name}AsyncEventsDropped",
                cloudwatch.Metric(
                    namespace="AWS/Lambda",
                    metric_name="AsyncEventsDropped",
                    dimensions_map={"FunctionName": functions[name].function_name},
                    period=FIVE_MINUTES,
                    statistic="Sum",
                ),
                f"sockless {name}: Lambda dropped asynchronous events (throttled past their maximum age, or failed); "
                "see the AsyncFailures queue",
            )
        self._alarm(
            "AsyncFailures",
            async_failures.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            "sockless: welcome or fan-out events Lambda gave up on wait in the AsyncFailures queue",
        )
        self._alarm(
            "WebhookDeadLetters",
            dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            "sockless webhooks: events gave up after every retry and wait in the DLQ",
        )
        self._alarm(
            "WebhookQueueDepth",
            webhook_queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            "sockless webhooks: more webhooks waiting than the workers keep up with",
            threshold=WEBHOOK_DEPTH_ALARM,
        )
        self._alarm(
            "WebhookBacklog",
            webhook_queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
            "sockless webhooks: the oldest queued webhook is older than Pusher's 5-minute retry window",
            threshold=WEBHOOK_AGE_ALARM_SECONDS,
        )

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{cdk.Stack.of(self).stack_name}-sockless"
        )
        ws_dimensions = {"ApiId": websocket_api.api_id, "Stage": websocket_stage}
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="WebSocket: connects and messages",
                left=[
                    _api_metric("ConnectCount", ws_dimensions),
                    _api_metric("MessageCount", ws_dimensions),
                ],
                right=[
                    _api_metric("ClientError", ws_dimensions),
                    _api_metric("IntegrationError", ws_dimensions),
                    _api_metric("ExecutionError", ws_dimensions),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="REST API: requests and errors",
                left=[rest_api.metric_count(period=FIVE_MINUTES)],
                right=[
                    rest_api.metric_client_error(period=FIVE_MINUTES),
                    rest_api.metric_server_error(period=FIVE_MINUTES),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda invocations",
                left=[f.metric_invocations(period=FIVE_MINUTES, label=name) for name, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors and throttles",
                left=[f.metric_errors(period=FIVE_MINUTES, label=f"{name} errors") for name, f in functions.items()],
                right=[
                    f.metric_throttles(period=FIVE_MINUTES, label=f"{name} throttles") for name, f in functions.items()
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Lambda duration p99 (ms)",
                left=[
                    f.metric_duration(period=FIVE_MINUTES, statistic="p99", label=name) for name, f in functions.items()
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Webhook queue",
                left=[
                    webhook_queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, label="queued"),
                    dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, label="DLQ"),
                ],
                right=[webhook_queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, label="oldest (s)")],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=12),
        )

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str, *, threshold: float = 1) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)


def _api_metric(name: str, dimensions: dict[str, str]) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/ApiGateway", metric_name=name, dimensions_map=dimensions, period=FIVE_MINUTES, statistic="Sum"
    )
