"""A DynamoDB stream and the event source mapping that reads it: the ordered frames table's (``-c
ordered_frames=stream``, cdk/components/frames_stream.py).

The stream is built from the table's writes, not taken from moto: a moto table with a stream makes moto's
transactions copy every table to roll back (``moto_speed.undo_by_item`` keeps the fast path only for tables
without one), and moto keeps every record forever. A ``Moto`` observer sees each write that reached the table,
in the order moto applied them (requests are served one at a time), and turns each ``PutItem`` into the record
Lambda would hand the function: ``eventName`` INSERT or MODIFY, ``dynamodb.Keys``, ``NewImage``,
``SequenceNumber`` (increasing), ``SizeBytes``, ``eventSourceARN`` (Lambda developer guide, "Using AWS Lambda
with Amazon DynamoDB", its example event). So records of one item come in the order of its writes, as DynamoDB
Streams guarantees (DynamoDB developer guide, "Change data capture for DynamoDB Streams").

The mapping follows the template's settings (Lambda developer guide, "Lambda parameters for Amazon DynamoDB
event source mappings", "Configuring partial batch response with DynamoDB and Lambda"):

- ``ParallelizationFactor`` N: N lanes, a record's lane chosen by its partition key, each lane one batch at a
  time: one key's records stay in order, different keys run concurrently (as Lambda reads a shard).
- ``BatchSize``: up to that many waiting records of a lane per invocation; ``FilterCriteria``: records matching
  no pattern are dropped before batching (only top-level ``{"field": [values]}`` patterns are emulated).
- A function error retries the batch, up to ``MaximumRetryAttempts``; with ``BisectBatchOnFunctionError`` a
  failed batch of several records is split in two and its first half retried, which does not consume the
  retry quota ("Splitting batches doesn't consume the retry quota": Lambda developer guide, "Retain discarded
  records for a DynamoDB event source in Lambda"), so retries are spent on a batch of one record.
  ``batchItemFailures`` (with ``ReportBatchItemFailures``) checkpoints before the lowest sequence number named
  and retries from there (one retry of the rest); an identifier that is empty or names no record of the batch
  fails it whole. A batch out of retries goes to the on-failure destination as Lambda's invocation record
  (``DDBStreamBatchInfo``) and is dropped; so do records older than ``MaximumRecordAgeInSeconds`` before they
  are sent ("Discard records older than the specified age", whether the function failed or could not be
  invoked: same page).
- Starting position LATEST: only writes after the mapping started.

Records are handed to a lane as soon as they are written, where Lambda polls a shard 4 times a second: the
emulator has none of that wait (docs/aws.md "Frames through a DynamoDB stream" says what it adds on AWS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cost.meter import item_size, request_json
from local_server.emulator.aws import AwsCall
from local_server.emulator.lambdas import FunctionError, LambdaService
from local_server.emulator.template import StreamSource, Table

log = logging.getLogger("sockless.emulator")

FIRST_SEQUENCE = 100_000_000_000_000_000_000  # 21 digits, the shortest a sequence number is


@dataclass
class Record:
    """One stream record as Lambda delivers it, and when it was written (for ``MaximumRecordAgeInSeconds``)."""

    event: dict[str, Any]
    key: str
    written: float = field(default_factory=time.monotonic)

    @property
    def sequence(self) -> str:
        return str(self.event["dynamodb"]["SequenceNumber"])


class TableStream:
    """The stream of one table, fed by a ``Moto`` observer (``observe``), read by its mappings."""

    def __init__(self, table: Table, region: str) -> None:
        self.table = table
        self.region = region
        self.key_names = [k["AttributeName"] for k in table.key_schema]
        self.readers: list[StreamMapping] = []
        self._next = FIRST_SEQUENCE
        self.records = 0

    def observe(self, call: AwsCall) -> None:
        """On the writer's thread, under moto's lock: one record per ``PutItem`` that reached the table."""
        if call.service != "dynamodb" or call.operation != "PutItem" or call.status != 200:
            return
        request = request_json(call.request)
        if request.get("TableName") != self.table.name or not self.readers:
            return
        item: dict[str, Any] = request.get("Item") or {}
        keys = {name: item[name] for name in self.key_names if name in item}
        self._next += 1
        event = {
            "eventID": f"{self._next:x}",
            "eventName": "INSERT" if call.size_of(self.table.name, keys) is None else "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": {
                "ApproximateCreationDateTime": int(time.time()),
                "Keys": keys,
                "NewImage": item,
                "SequenceNumber": str(self._next),
                "SizeBytes": item_size(item),
                "StreamViewType": self.table.stream_view_type,
            },
            "eventSourceARN": self.table.stream_arn,
        }
        self.records += 1
        record = Record(event, json.dumps(keys, sort_keys=True))
        for reader in self.readers:
            reader.offer(record)


def matches(pattern: str, event: Mapping[str, Any]) -> bool:
    """A ``FilterCriteria`` pattern's top-level ``{"field": [values]}`` rules (Lambda developer guide, "Control
    which events Lambda sends to your function"); nested patterns match every record."""
    try:
        rules = json.loads(pattern)
    except ValueError:
        return True
    for name, allowed in rules.items():
        if (
            isinstance(allowed, list)
            and all(not isinstance(v, dict) for v in allowed)
            and event.get(name) not in allowed
        ):
            return False
    return True


class StreamMapping:
    """Lambda reading ``stream`` for ``source.function`` with the template's settings (module docstring)."""

    def __init__(
        self,
        *,
        stream: TableStream,
        source: StreamSource,
        lambdas: LambdaService,
        destination: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.stream = stream
        self.source = source
        self.function = source.function
        self.queue_url = source.stream_arn  # what /@emulator/stats names a mapping by
        self.lambdas = lambdas
        self.destination = destination
        lanes = max(1, source.parallelization_factor)
        self._lanes: list[deque[Record]] = [deque() for _ in range(lanes)]
        self._wake = [asyncio.Event() for _ in range(lanes)]
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # /@emulator/stats: batches invoked, answers that failed their batch whole, records retried, and
        # records sent to the on-failure destination; ``out_of_order`` is the SQS mappings' (always 0 here).
        self.batches = 0
        self.invalid_answers = 0
        self.retried = 0
        self.discarded = 0
        self.out_of_order = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.stream.readers.append(self)
        self._tasks = [asyncio.create_task(self._lane(i)) for i in range(len(self._lanes))]

    async def stop(self) -> None:
        if self in self.stream.readers:
            self.stream.readers.remove(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def offer(self, record: Record) -> None:
        """From any thread: queue ``record`` on its key's lane (unless the filters drop it)."""
        if self._loop is None or self._loop.is_closed():
            return
        if self.source.filters and not any(matches(p, record.event) for p in self.source.filters):
            return
        self._loop.call_soon_threadsafe(self._enqueue, record)

    def _enqueue(self, record: Record) -> None:
        lane = zlib.crc32(record.key.encode()) % len(self._lanes)
        self._lanes[lane].append(record)
        self._wake[lane].set()

    async def _lane(self, index: int) -> None:
        waiting, wake = self._lanes[index], self._wake[index]
        attempts = 0  # failed attempts of the batch that starts at ``waiting[0]``
        while True:
            if not waiting:
                wake.clear()
                await wake.wait()
                continue
            batch = [waiting[i] for i in range(min(self.source.batch_size, len(waiting)))]
            try:
                done, attempts = await self.run_batch(batch, attempts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stream mapping of %s failed; retrying", self.function)
                await asyncio.sleep(1.0)
                continue
            for _ in range(done):
                waiting.popleft()

    async def run_batch(self, batch: list[Record], attempts: int = 0) -> tuple[int, int]:
        """Invoke until the batch (or a part of it) is settled. Returns how many records of it are done with
        (processed, or given up on), from its start, and the failed attempts already spent on the next one."""
        while True:
            old = self._too_old(batch)
            if old:
                self._discard(batch[:old], "RecordAgeExceeded", attempts)
                return old, 0
            self.batches += 1
            failed_at, whole = await self._invoke(batch)
            if failed_at is None:
                return len(batch), 0
            if failed_at > 0:
                # Checkpointed before the first failure: those are done; the rest is retried (a retry).
                self.retried += len(batch) - failed_at
                return failed_at, 1
            if whole and self.source.bisect_on_error and len(batch) > 1:
                self.retried += len(batch) // 2
                batch = batch[: len(batch) // 2]  # the first half alone; no retry spent
                continue
            attempts += 1
            if self.source.max_retries >= 0 and attempts > self.source.max_retries:
                self._discard(batch, "RetryAttemptsExhausted", attempts)
                return len(batch), 0
            self.retried += len(batch)

    def _too_old(self, batch: list[Record]) -> int:
        """How many records at the batch's start are older than ``MaximumRecordAgeInSeconds`` (a lane's records
        are in the order they were written, so the old ones come first)."""
        if self.source.max_record_age < 0:
            return 0
        limit = time.monotonic() - self.source.max_record_age
        return next((i for i, record in enumerate(batch) if record.written >= limit), len(batch))

    async def _invoke(self, batch: list[Record]) -> tuple[int | None, bool]:
        """One invocation: (None, _) when the batch succeeded, else the index of the first record to retry and
        whether the batch failed whole (a function error or an answer Lambda cannot use)."""
        try:
            answer = await self.lambdas.invoke(self.function, {"Records": [r.event for r in batch]})
        except FunctionError:
            return 0, True
        if not self.source.report_batch_item_failures or not isinstance(answer, Mapping):
            return None, False
        items = answer.get("batchItemFailures")
        if not items:
            return None, False
        sequences = [r.sequence for r in batch]
        failed: list[int] = []
        for item in items if isinstance(items, list) else [None]:
            identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
            if not isinstance(identifier, str) or identifier not in sequences:
                self.invalid_answers += 1
                log.warning("%s: the whole batch failed (as on Lambda): bad itemIdentifier in %r", self.function, item)
                return 0, True
            failed.append(sequences.index(identifier))
        return min(failed), False

    def _discard(self, batch: list[Record], condition: str, attempts: int) -> None:
        """Lambda gives up on ``batch``: its on-failure destination gets the batch's description."""
        self.discarded += len(batch)
        log.error("%s: %d stream record(s) discarded after retries or age", self.function, len(batch))
        if self.source.on_failure is None:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        record = {
            "requestContext": {
                "requestId": batch[0].event["eventID"],
                "functionArn": self.function,
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": now,
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000000000000000000-00000001",
                "startSequenceNumber": batch[0].sequence,
                "endSequenceNumber": batch[-1].sequence,
                "approximateArrivalOfFirstRecord": now,
                "approximateArrivalOfLastRecord": now,
                "batchSize": len(batch),
                "streamArn": self.source.stream_arn,
            },
        }
        with contextlib.suppress(Exception):
            self.destination(self.source.on_failure, record)
