"""The webhook worker: an SQS batch through the ``WebhookDispatcher``'s delivery path, partial failures reported.

Each record is one ``WebhookJob``. The dispatcher re-checks delayed events (``channel_vacated``,
``member_removed`` are dropped if the state came back during the 3 s SQS delay), batches per app and
target, signs and delivers, and handles a failed delivery by pushing a delayed copy (its backoff and
5-minute window) before acking the original. A record it did not ack (malformed, or even the retry
push failed) is reported in ``batchItemFailures``: SQS hands it out again, then moves it to the DLQ.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.runtime import Container, container, entry
from shared.webhooks.base import WebhookJob, WebhookQueue
from shared.webhooks.dispatcher import WebhookDispatcher

log = logging.getLogger("sockless.webhooks")

processor = BatchProcessor(event_type=EventType.SQS)


class NotDelivered(Exception):
    """The record's job was neither delivered, nor re-queued, nor given up: let SQS retry it."""


class BatchQueue:
    """The dispatcher's queue for one SQS batch: pushes (retries) go to the real queue; acks are only
    recorded, because the event source mapping deletes the records this invocation reports as done."""

    def __init__(self, queue: WebhookQueue) -> None:
        self.queue = queue
        self.acked: set[str] = set()

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        await self.queue.push(job, delay_seconds)

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        return []

    async def ack(self, jobs: Sequence[WebhookJob]) -> None:
        self.acked.update(job.receipt for job in jobs if job.receipt is not None)

    async def pending(self) -> int:
        return 0

    async def close(self) -> None:
        return None

    async def check_health(self) -> bool:
        return True


def parse_job(record: dict[str, Any]) -> WebhookJob | None:
    try:
        return WebhookJob.from_dict(json.loads(record["body"]), receipt=str(record["messageId"]))
    except (KeyError, TypeError, ValueError):
        log.error("malformed webhook job in SQS message %s", record.get("messageId"))
        return None


async def deliver(current: Container, records: Sequence[dict[str, Any]]) -> set[str]:
    """Deliver the batch; the message ids that are done with (delivered, re-queued or given up)."""
    services = current.services
    queue = BatchQueue(services.queue)
    dispatcher = WebhookDispatcher(
        queue=queue,
        apps=services.apps,
        store=services.store,
        targets=current.webhook_targets(),
        settings=current.settings.webhooks,
        metrics=services.metrics,
    )
    jobs = [job for job in map(parse_job, records) if job is not None]
    await dispatcher.process(jobs)
    return queue.acked


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = container()
    done = current.run(deliver(current, event.get("Records", [])))

    def record_handler(record: SQSRecord) -> None:
        if record.message_id not in done:
            raise NotDelivered(record.message_id)

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
