"""``SqsWebhookQueue``: webhook jobs in an SQS standard queue (JSON body = ``WebhookJob.to_dict()``).

SQS gives the contract of shared/webhooks/base.py natively: ``ReceiveMessage`` hides messages for the
queue's visibility timeout, ``DeleteMessage`` acks, ``DelaySeconds`` (0-900, standard queues only) is
the webhook delay. On Lambda the SQS event source mapping does the receiving and deleting (partial
batch failures); the handler turns each record into a job with :meth:`SqsWebhookQueue.job_from_record`.
``receive``/``ack`` serve the local worker and the emulator's poller.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from shared.aws_io import AWS_ERRORS, AwsCaller, unavailable
from shared.webhooks.base import MAX_DELAY_SECONDS, WebhookJob

log = logging.getLogger("sockless.webhooks")

MAX_BATCH = 10  # SQS receives and deletes at most 10 messages per call
MAX_WAIT_SECONDS = 20  # SQS long polling waits at most 20 s per call


class SqsWebhookQueue:
    def __init__(
        self,
        queue_url: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_workers: int = 4,
        executor: Executor | None = None,
    ) -> None:
        self.queue_url = queue_url
        self._aws = AwsCaller(
            "sqs", client=client, region=region, endpoint_url=endpoint_url, max_workers=max_workers, executor=executor
        )

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return await self._aws.call(operation, QueueUrl=self.queue_url, **kwargs)
        except AWS_ERRORS as exc:
            raise unavailable(exc, f"SQS {operation}") from exc

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        # DelaySeconds is whole seconds: round up, so a delayed event is never re-checked early.
        delay = min(max(math.ceil(delay_seconds), 0), int(MAX_DELAY_SECONDS))
        body = json.dumps(job.to_dict(), separators=(",", ":"), ensure_ascii=False)
        await self._call("send_message", MessageBody=body, DelaySeconds=delay)

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        """One long poll (repeated past SQS's 20 s cap), then whatever else is ready right away.

        SQS waits in whole seconds, so a wait under one second does not long-poll at all.
        """
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        jobs: list[WebhookJob] = []
        while len(jobs) < max_items:
            # Whole seconds; the tolerance keeps a 1 s wait from becoming 0 s after a few microseconds.
            wait = 0 if jobs else min(int(max(deadline - time.monotonic(), 0.0) + 0.05), MAX_WAIT_SECONDS)
            page = await self._call(
                "receive_message", MaxNumberOfMessages=min(max_items - len(jobs), MAX_BATCH), WaitTimeSeconds=wait
            )
            messages = page.get("Messages", [])
            malformed: list[str] = []
            for message in messages:
                record = {"body": message.get("Body", ""), "receiptHandle": message.get("ReceiptHandle")}
                job = self.job_from_record(record)
                if job is None:
                    malformed.append(str(message.get("ReceiptHandle")))
                else:
                    jobs.append(job)
            # A body that is not a job can never be delivered: delete it rather than see it forever.
            await self._delete(malformed)
            if not messages and (jobs or wait == 0 or deadline - time.monotonic() < 0.95):
                break
        return jobs

    @staticmethod
    def job_from_record(record: Mapping[str, Any]) -> WebhookJob | None:
        """A job from an SQS message as the Lambda event source delivers it (``body``, ``receiptHandle``);
        ``None`` (logged) for a body that is not a job."""
        try:
            return WebhookJob.from_dict(json.loads(record["body"]), receipt=record.get("receiptHandle"))
        except (KeyError, ValueError, TypeError) as exc:
            log.error("dropping a malformed webhook job from SQS: %s", exc)
            return None

    async def ack(self, jobs: Sequence[WebhookJob]) -> None:
        await self._delete([job.receipt for job in jobs if job.receipt is not None])

    async def _delete(self, receipts: Sequence[str]) -> None:
        unique = list(dict.fromkeys(receipts))
        for start in range(0, len(unique), MAX_BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(unique[start : start + MAX_BATCH])]
            result = await self._call("delete_message_batch", Entries=entries)
            for failure in result.get("Failed", []):
                # An expired or already used receipt: the message was deleted, or will be redelivered.
                if failure.get("Code") != "ReceiptHandleIsInvalid":
                    log.warning("SQS could not delete a webhook job: %s", failure)

    async def pending(self) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        attributes = (await self._call("get_queue_attributes", AttributeNames=names))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    async def close(self) -> None:
        await self._aws.close()

    async def check_health(self) -> bool:
        try:
            await self._call("get_queue_attributes", AttributeNames=["QueueArn"])
        except Exception:
            return False
        return True
