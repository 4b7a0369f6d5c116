"""An SQS event source mapping: poll a queue, invoke a function with batches, delete what succeeded.

Configured by the template's ``AWS::Lambda::EventSourceMapping`` (batch size, ``ReportBatchItemFailures``,
maximum concurrency). With partial batch responses on, records named in ``batchItemFailures`` stay in the
queue and come back after the visibility timeout (then to the DLQ after ``maxReceiveCount``); a function
error leaves the whole batch; everything else is deleted. The mapping polls with the function's own
credentials, as Lambda does with its execution role, so the role needs the SQS grants AWS asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from local_server.emulator import events
from local_server.emulator.lambdas import FunctionError, LambdaService

log = logging.getLogger("sockless.emulator")

# The running mappings by queue URL: a send wakes its queue's idle pollers (``notify``), as a long poll
# returns as soon as a message arrives instead of at its next poll.
_by_queue: dict[str, list[EventSourceMapping]] = {}


def notify(queue_url: str) -> None:
    for mapping in _by_queue.get(queue_url, ()):
        mapping.wake.set()


class EventSourceMapping:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        function: str,
        lambdas: LambdaService,
        region: str,
        batch_size: int = 10,
        report_batch_item_failures: bool = True,
        pollers: int = 2,
        idle_sleep: float = 0.1,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.function = function
        self.lambdas = lambdas
        self.region = region
        self.batch_size = batch_size
        self.report_batch_item_failures = report_batch_item_failures
        self.pollers = pollers
        self.idle_sleep = idle_sleep
        self._tasks: list[asyncio.Task[None]] = []
        self.wake = asyncio.Event()

    def start(self) -> None:
        _by_queue.setdefault(self.queue_url, []).append(self)
        self._tasks = [asyncio.create_task(self._poll()) for _ in range(self.pollers)]

    async def stop(self) -> None:
        mappings = _by_queue.get(self.queue_url, [])
        if self in mappings:
            mappings.remove(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            try:
                self.wake.clear()
                if not await self.poll_once(wait_seconds=0):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), self.idle_sleep)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SQS poller for %s failed; retrying", self.queue_url)
                await asyncio.sleep(1.0)

    async def poll_once(self, wait_seconds: int) -> int:
        """One ``ReceiveMessage`` and, if it returned anything, one invocation; returns the batch size."""
        response = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [events.sqs_record(m, self.queue_arn, self.region) for m in messages]}
        try:
            result = await self.lambdas.invoke(self.function, event)
        except FunctionError:
            return len(messages)  # the whole batch comes back after the visibility timeout
        items = result.get("batchItemFailures") or [] if isinstance(result, dict) else []
        # Without ReportBatchItemFailures Lambda ignores the response: the batch succeeded.
        failed = {str(item.get("itemIdentifier")) for item in items} if self.report_batch_item_failures else set()
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            await asyncio.to_thread(self.sqs.delete_message_batch, QueueUrl=self.queue_url, Entries=entries)
        return len(messages)
