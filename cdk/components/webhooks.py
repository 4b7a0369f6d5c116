"""The webhook pipeline: an SQS queue the handlers enqueue to, a DLQ, and the worker's event source.

SQS because webhook delivery must outlive any one invocation: the 3 s channel_vacated/member_removed
delay is a per-message ``DelaySeconds``, a failed delivery goes back to the queue (partial batch failures:
only the failed messages), and after ``MAX_RECEIVES`` attempts a message waits in the DLQ for a human.

The worker's event source mapping is enabled only when an app of the apps file has webhooks
(:func:`polled`): an enabled mapping long-polls the queue all month whether or not anything is enqueued
(docs/cost.md "The event source mappings' idle polls"), and without webhooks nothing ever is. Apps live in
the template, so giving an app webhooks is a redeploy, which enables the mapping (``Enabled`` is updated in
place, not replaced).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from cdk.components.queues import consumed_queue
from cdk.config import AppEntry

MAX_RECEIVES = 5
RETENTION = cdk.Duration.days(4)
BATCH_SIZE = 10


class WebhookQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, worker_timeout: cdk.Duration) -> None:
        super().__init__(scope, construct_id)
        self.queue, self.dead_letters = consumed_queue(
            self, consumer_timeout=worker_timeout, retention=RETENTION, max_receives=MAX_RECEIVES
        )

    @property
    def environment(self) -> dict[str, str]:
        return {"SOCKLESS_QUEUE__DRIVER": "sqs", "SOCKLESS_QUEUE__QUEUE_URL": self.queue.queue_url}

    def attach_worker(self, worker: lambda_.Function, *, max_concurrency: int, enabled: bool) -> None:
        """Feed the worker with partial batch failures on; ``max_concurrency`` caps the pollers so a backlog
        never floods customers' webhook endpoints (it throttles at the source, unlike reserved concurrency,
        which would bounce messages back to the queue and toward the DLQ). ``enabled``: :func:`polled`."""
        worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
                enabled=enabled,
            )
        )


def polled(apps: tuple[AppEntry, ...]) -> bool:
    """Whether the worker's mapping polls the queue: when some app has a webhook (the handlers enqueue only
    for an app's webhooks, shared/engine/emitter.py). A disabled mapping does not poll
    (Lambda API reference, CreateEventSourceMapping ``Enabled``: "When false, Lambda pauses polling and
    invocation", https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html)."""
    return any(entry.settings.get("webhooks") for entry in apps)
