"""An SQS event source mapping: poll a queue, invoke a function with batches, delete what succeeded.

Configured by the template's ``AWS::Lambda::EventSourceMapping`` (batch size, ``ReportBatchItemFailures``,
maximum concurrency). With partial batch responses on, records named in ``batchItemFailures`` stay in the
queue and come back after the visibility timeout (then to the DLQ after ``maxReceiveCount``); a function
error leaves the whole batch; everything else is deleted (``batch_response.settle``: an answer naming no
message of the batch fails it whole; on a FIFO queue a message deleted after a failed one of its group is
counted in ``out_of_order``). A FIFO group is held back while any of its messages is in flight: moto's
``ReceiveMessage`` skips the groups it has handed out and not yet seen deleted or visible again, as SQS does.
The mapping polls with the function's own credentials, as Lambda does with its execution role, so the role
needs the SQS grants AWS asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cost.meter import request_json
from local_server.emulator import events
from local_server.emulator.aws import AwsCall
from local_server.emulator.batch_response import settle
from local_server.emulator.lambdas import FunctionError, LambdaService

log = logging.getLogger("sockless.emulator")

# The running mappings by queue URL: a send wakes its queue's idle pollers (``notify``), as a long poll
# returns as soon as a message arrives instead of at its next poll.
_by_queue: dict[str, list[EventSourceMapping]] = {}
SENDS = ("SendMessage", "SendMessageBatch")


def notify(queue_url: str, delay: float = 0.0) -> None:
    """Wake the idle pollers of ``queue_url`` now, or after ``delay`` seconds (a message sent with
    ``DelaySeconds``); from any thread."""
    for mapping in _by_queue.get(queue_url, ()):
        mapping.notify(delay)


def woken_by(call: AwsCall) -> None:
    """A ``Moto`` observer: every message sent to a mapped queue, by whatever client, wakes its pollers when
    it becomes visible, so they poll on their own only for messages back from a visibility timeout."""
    if call.service != "sqs" or call.operation not in SENDS or call.status != 200:
        return
    request = request_json(call.request)
    url = str(request.get("QueueUrl", ""))
    if url not in _by_queue:
        return
    entries = request.get("Entries") if call.operation == "SendMessageBatch" else [request]
    for delay in {float(entry.get("DelaySeconds") or 0) for entry in entries or []}:
        notify(url, delay)


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
        idle_sleep: float = 1.0,
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
        self.fifo = queue_arn.endswith(".fifo")
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wake = asyncio.Event()
        # What /@emulator/stats reports: batches invoked, answers that failed their batch whole, and (FIFO)
        # messages deleted although an earlier message of their group failed.
        self.batches = 0
        self.invalid_answers = 0
        self.out_of_order = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        _by_queue.setdefault(self.queue_url, []).append(self)
        self._tasks = [asyncio.create_task(self._poll()) for _ in range(self.pollers)]

    def notify(self, delay: float = 0.0) -> None:
        """Wake the idle pollers now or in ``delay`` seconds; from any thread."""
        if self._loop is None or self._loop.is_closed():
            return
        if delay > 0:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay, self.wake.set)
        else:
            self._loop.call_soon_threadsafe(self.wake.set)

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
        records = [events.sqs_record(m, self.queue_arn, self.region) for m in messages]
        self.batches += 1
        try:
            result = await self.lambdas.invoke(self.function, {"Records": records})
        except FunctionError:
            return len(messages)  # the whole batch comes back after the visibility timeout
        settled = settle(records, result, report_batch_item_failures=self.report_batch_item_failures, fifo=self.fifo)
        if settled.invalid is not None:
            self.invalid_answers += 1
            log.warning("%s: the whole batch failed (as on Lambda): %s", self.function, settled.invalid)
        if settled.out_of_order:
            self.out_of_order += len(settled.out_of_order)
            log.error(
                "%s broke FIFO order: %d message(s) reported successful after a failed one of their group "
                "are deleted (as on Lambda): %s",
                self.function,
                len(settled.out_of_order),
                ", ".join(settled.out_of_order),
            )
        done = [m for m in messages if m["MessageId"] in settled.deleted]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            await asyncio.to_thread(self.sqs.delete_message_batch, QueueUrl=self.queue_url, Entries=entries)
        return len(messages)
