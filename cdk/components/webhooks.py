"""The webhook pipeline: an SQS queue the handlers enqueue to, a DLQ, and the worker's event source.

SQS because webhook delivery must outlive any one invocation: the 3 s channel_vacated/member_removed
delay is a per-message ``DelaySeconds``, a failed delivery goes back to the queue (partial batch failures:
only the failed messages), and after ``MAX_RECEIVES`` attempts a message waits in the DLQ for a human.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from cdk.components.queues import consumed_queue

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

    def attach_worker(self, worker: lambda_.Function, *, max_concurrency: int) -> None:
        """Feed the worker with partial batch failures on; ``max_concurrency`` caps the pollers so a backlog
        never floods customers' webhook endpoints (it throttles at the source, unlike reserved concurrency,
        which would bounce messages back to the queue and toward the DLQ)."""
        worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )
