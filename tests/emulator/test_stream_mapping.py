"""The emulator's DynamoDB stream event source mapping (``streams.py``) does what Lambda documents.

The mapping reads a table's stream built from real ``PutItem`` calls into the emulator's moto (in-process, as
the integration writes them) and invokes ``echo_functions.stream_reader`` through a real ``LambdaService``: the
reader fails or reports the records the test marks. The settings are the ordered frames stream's
(``cdk/components/frames_stream.py``) unless a test needs another. What each test holds the mapping to (Lambda
developer guide):

- "Configuring partial batch response with DynamoDB and Lambda": a reported ``SequenceNumber`` is a checkpoint;
  Lambda retries the records from there, not the ones before it.
- "Retain discarded records for a DynamoDB event source in Lambda": retries stop at ``MaximumRetryAttempts``,
  the batch's description goes to the on-failure destination and the stream goes on; splitting a batch
  (``BisectBatchOnFunctionError``) does not consume the retry quota; records older than
  ``MaximumRecordAgeInSeconds`` are discarded.
- "Control which events Lambda sends to your function": records no filter matches never invoke the function.
- "Using AWS Lambda with Amazon DynamoDB", "Concurrent reads of a shard": with a ``ParallelizationFactor``,
  one partition key's records stay in order while other keys' batches run at the same time.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from cdk.components.frames_stream import BATCH_SIZE, MAX_RETRIES, PARALLELIZATION_FACTOR
from local_server.emulator import aws
from local_server.emulator.iam import Iam
from local_server.emulator.lambdas import LambdaService
from local_server.emulator.streams import Record, StreamMapping, TableStream
from local_server.emulator.template import StreamSource, Table

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "frames-stream-mapping"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
FAILURES = f"arn:aws:sqs:{REGION}:{ACCOUNT}:frames-failures"
# What the template's filter synthesizes to (FilterRule.or_("INSERT", "MODIFY") on eventName).
FILTER = json.dumps({"eventName": ["INSERT", "MODIFY"]})
FRAMES = StreamSource(
    function="reader",
    table=TABLE,
    stream_arn=f"{TABLE_ARN}/stream/2024-01-01T00:00:00.000",
    batch_size=BATCH_SIZE,
    parallelization_factor=PARALLELIZATION_FACTOR,
    max_retries=MAX_RETRIES,
    max_record_age=60.0,
    bisect_on_error=True,
    report_batch_item_failures=True,
    on_failure=FAILURES,
    filters=(FILTER,),
)


@dataclass
class Stream:
    """The table, its stream, the reader and what the on-failure destination received."""

    dynamodb: Any
    stream: TableStream
    lambdas: LambdaService
    log: Path
    failures: list[dict[str, Any]] = field(default_factory=list)
    mapping: StreamMapping | None = None

    def start(self, source: StreamSource = FRAMES) -> StreamMapping:
        def destination(arn: str, record: dict[str, Any]) -> None:
            assert arn == FAILURES
            self.failures.append(record)

        self.mapping = StreamMapping(stream=self.stream, source=source, lambdas=self.lambdas, destination=destination)
        self.mapping.start()
        return self.mapping

    def put(self, key: str, n: int, **attributes: str | float) -> str:
        """One frame's write, as the integration makes it; returns its record's SequenceNumber."""
        item: dict[str, Any] = {"connectionId": {"S": key}, "n": {"N": str(n)}}
        for name, value in attributes.items():
            item[name] = {"S": value} if isinstance(value, str) else {"N": str(value)}
        self.dynamodb.put_item(TableName=TABLE, Item=item)
        return str(self.stream._next)

    def entries(self, kind: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [e["event"] for e in map(json.loads, lines) if e["kind"] == kind]

    def batches(self) -> list[list[int]]:
        return [[n for _key, n in b["records"]] for b in self.entries("batch")]

    def processed(self, key: str | None = None) -> list[int]:
        return [e["n"] for e in self.entries("processed") if key is None or e["key"] == key]

    async def until(self, done: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, (self.batches(), self.processed(), self.failures)
            await asyncio.sleep(0.02)


@pytest.fixture
def moto() -> Iterator[aws.Moto]:
    moto = aws.Moto(iam=Iam(region=REGION, account=ACCOUNT))
    moto.start()
    yield moto
    moto.stop()


@pytest.fixture
async def stream(moto: aws.Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stream]:
    log = tmp_path / "echo.jsonl"
    monkeypatch.setenv("ECHO_LOG", str(log))
    session = boto3.session.Session(aws_access_key_id="AKIAADMIN", aws_secret_access_key="x", region_name=REGION)
    dynamodb = session.client("dynamodb", endpoint_url=moto.url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = Table(
        name=TABLE,
        arn=TABLE_ARN,
        key_schema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        attributes=[{"AttributeName": "connectionId", "AttributeType": "S"}],
        indexes=[],
        ttl_attribute="expires",
        stream_view_type="NEW_IMAGE",
    )
    table_stream = TableStream(table, REGION)
    moto.observers.append(table_stream.observe)
    lambdas = LambdaService(region=REGION, concurrency=4)
    lambdas.register("reader", "tests.emulator.echo_functions.stream_reader")
    state = Stream(dynamodb, table_stream, lambdas, log)
    yield state
    if state.mapping is not None:
        await state.mapping.stop()
    moto.observers.remove(table_stream.observe)
    dynamodb.delete_table(TableName=TABLE)  # moto's state outlives the server


def lane(key: str) -> int:
    """The lane the emulator reads ``key``'s records in (``StreamMapping._enqueue``)."""
    return zlib.crc32(json.dumps({"connectionId": {"S": key}}, sort_keys=True).encode()) % PARALLELIZATION_FACTOR


async def test_a_reported_failure_restarts_the_batch_at_that_record(stream: Stream) -> None:
    stream.start()
    # Written before the loop runs the lane: the five are one batch.
    once: dict[str, str | float] = {"fail": "report", "times": 1}
    sequences = [stream.put("a", n, **(once if n == 3 else {})) for n in range(1, 6)]
    await stream.until(lambda: stream.processed() == [1, 2, 3, 4, 5])
    await asyncio.sleep(0.2)  # nothing more comes
    assert stream.batches() == [[1, 2, 3, 4, 5], [3, 4, 5]]
    assert stream.processed() == [1, 2, 3, 4, 5]
    assert len(set(sequences)) == 5 and sequences == sorted(sequences)
    assert stream.failures == []


async def test_retries_stop_at_the_quota_then_the_batch_goes_to_the_destination_and_the_stream_goes_on(
    stream: Stream,
) -> None:
    stream.start(replace(FRAMES, bisect_on_error=False))
    first = stream.put("a", 1)
    stream.put("a", 2, fail="raise")
    last = stream.put("a", 3)
    await stream.until(lambda: len(stream.failures) == 1)
    # The first try and MaximumRetryAttempts retries, the whole batch each time (1 is processed each time).
    assert stream.batches() == [[1, 2, 3]] * (1 + MAX_RETRIES)
    [failure] = stream.failures
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1 + MAX_RETRIES
    info = failure["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (first, last, 3)
    assert info["streamArn"] == FRAMES.stream_arn

    stream.put("a", 4)
    await stream.until(lambda: 4 in stream.processed())
    assert stream.processed() == [1] * (1 + MAX_RETRIES) + [4]
    assert stream.batches()[-1] == [4]


async def test_bisection_isolates_the_bad_record_without_spending_retries(stream: Stream) -> None:
    stream.start()
    bad = stream.put("a", 1, fail="raise")
    for n in range(2, BATCH_SIZE + 1):
        stream.put("a", n)
    await stream.until(lambda: len(stream.processed()) == BATCH_SIZE - 1)
    # Halved until the bad record is alone (no retry spent), then retried MaximumRetryAttempts times; only it
    # goes to the destination, and every other record is processed once.
    halves = [list(range(1, BATCH_SIZE + 1)), [1, 2, 3, 4, 5], [1, 2], [1]]
    assert stream.batches() == [*halves, *[[1]] * MAX_RETRIES, list(range(2, BATCH_SIZE + 1))]
    assert stream.processed() == list(range(2, BATCH_SIZE + 1))
    [failure] = stream.failures
    info = failure["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (bad, bad, 1)
    assert failure["requestContext"]["approximateInvokeCount"] == 1 + MAX_RETRIES


async def test_records_older_than_the_maximum_age_go_to_the_destination_uninvoked(stream: Stream) -> None:
    mapping = stream.start()
    sequence = stream.put("a", 1)
    await stream.until(lambda: stream.processed() == [1])
    # Two records of one key offered together, their write times set: two minutes ago, and now.
    now = time.monotonic()
    old = Record(_event(sequence, "b", 2), json.dumps({"connectionId": {"S": "b"}}), now - 120)
    mapping.offer(old)
    mapping.offer(Record(_event(sequence, "b", 3), json.dumps({"connectionId": {"S": "b"}}), now))
    await stream.until(lambda: stream.processed() == [1, 3])
    assert stream.batches() == [[1], [3]]
    [failure] = stream.failures
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    info = failure["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["batchSize"]) == (old.sequence, 1)


def _event(sequence: str, key: str, n: int) -> dict[str, Any]:
    """A stream record's event (the shape ``TableStream.observe`` gives), for records offered directly."""
    image = {"connectionId": {"S": key}, "n": {"N": str(n)}}
    return {
        "eventID": f"{int(sequence) + n:x}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "Keys": {"connectionId": {"S": key}},
            "NewImage": image,
            "SequenceNumber": str(int(sequence) + 1000 + n),
            "SizeBytes": 30,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": FRAMES.stream_arn,
    }


async def test_ttl_removals_are_filtered_out_before_any_invocation(stream: Stream) -> None:
    mapping = stream.start()
    sequence = stream.put("a", 1)
    await stream.until(lambda: stream.processed() == [1])
    removal = _event(sequence, "a", 2)
    removal["eventName"] = "REMOVE"  # what TTL's delete writes (no NewImage)
    removal["dynamodb"].pop("NewImage")
    mapping.offer(Record(removal, json.dumps({"connectionId": {"S": "a"}})))
    stream.put("a", 3)
    await stream.until(lambda: stream.processed() == [1, 3])
    assert stream.batches() == [[1], [3]]
    assert stream.failures == []


async def test_one_key_stays_in_order_while_other_keys_run_beside_it(stream: Stream) -> None:
    stream.start()
    slow, fast = "slow", next(k for k in (f"fast{i}" for i in range(50)) if lane(k) != lane("slow"))
    stream.put(slow, 1, sleep=0.6)
    await stream.until(lambda: len(stream.batches()) == 1)
    # While slow's first record runs: its next records wait for it, another key's do not.
    stream.put(slow, 2)
    stream.put(slow, 3)
    stream.put(fast, 1)
    await stream.until(lambda: len(stream.processed(slow)) == 3 and stream.processed(fast) == [1])
    assert stream.processed(slow) == [1, 2, 3]
    processed = stream.entries("processed")
    at = {(e["key"], e["n"]): e["at"] for e in processed}
    assert at[(fast, 1)] < at[(slow, 1)], "the other key waited for the slow one"
    # slow's later records came in one batch, after its first was done
    batches = [b for b in stream.entries("batch") if b["records"][0][0] == slow]
    assert [[n for _k, n in b["records"]] for b in batches] == [[1], [2, 3]]
    assert batches[1]["started"] >= at[(slow, 1)]
