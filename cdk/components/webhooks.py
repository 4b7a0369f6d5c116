"""The webhook pipeline: an SQS queue the handlers enqueue to, a DLQ, and the worker's event source.

SQS because webhook delivery must outlive any one invocation: the 3 s channel_vacated/member_removed
delay is a per-message ``DelaySeconds``, a failed delivery goes back to the queue (partial batch failures:
only the failed messages), and after ``MAX_RECEIVES`` attempts a message waits in the DLQ for a human.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

MAX_RECEIVES = 5
BATCH_SIZE = 10


class WebhookQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, worker_timeout: cdk.Duration) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            retention_period=cdk.Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            # AWS's rule for Lambda event sources: at least 6x the function timeout, so a batch still being
            # retried inside the worker is not handed to a second worker.
            visibility_timeout=cdk.Duration.seconds(worker_timeout.to_seconds() * 6),
            retention_period=cdk.Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVES),
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
