"""The emulator's SQS FIFO event source mapping holds a message group the way SQS and Lambda do.

The frames queue (a FIFO queue, ``cdk/components/frames.py``) is read by an echo function in the message
function's place (``echo_functions.fifo_reader``); the test writes to the queue directly, one
``SendMessageBatch`` so the ten messages arrive in one batch. In each of two groups the third message fails
on its first receive: the reader that follows AWS's rule for FIFO partial batch responses (report the rest of
the group too) sees its group in order, and a message sent while the group waits comes after it; the reader
that reports only the failed message gets what Lambda does then (the later ones are deleted, the group goes
on out of order), and the emulator counts it (docs/aws.md, "What the emulator does not follow").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from cdk.stack import FUNCTIONS
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    log = tmp_path / "echo.jsonl"
    args = (
        "--emulate-lambda",
        "--sweep-interval",
        "0",
        "--replace-handler",
        f"{FUNCTIONS['message'].handler}=tests.emulator.echo_functions.fifo_reader",
    )
    server = ServerProcess({}, args=args, env={"ECHO_LOG": str(log)}).start(timeout=60)
    yield server, log
    server.cleanup()


def entries(log: Path, kind: str, group: str) -> list[int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [e["event"]["n"] for e in map(json.loads, lines) if e["kind"] == kind and e["event"]["group"] == group]


async def frames_mapping(server: ServerProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/@emulator/stats") as response:
        mappings = (await response.json())["event_source_mappings"]
    [mapping] = [m for m in mappings if m["queue_url"].endswith(".fifo")]
    return dict(mapping)


async def test_a_failed_message_holds_its_group_in_order_unless_the_reader_reports_it_alone(
    reader: tuple[ServerProcess, Path],
) -> None:
    server, log = reader
    queue_url = (await frames_mapping(server))["queue_url"]
    # A client outside the stack (not subject to IAM); the template's visibility timeout is 60 s.
    sqs = boto3.client(
        "sqs",
        endpoint_url=queue_url.rsplit("/", 2)[0],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})

    def entry(group: str, n: int, **extra: bool) -> dict[str, str]:
        body = json.dumps({"n": n, **extra})
        return {
            "Id": f"{group}{n}",
            "MessageBody": body,
            "MessageGroupId": group,
            "MessageDeduplicationId": body + group,
        }

    batch = [entry("careful", n, **({"fail_once": True} if n == 3 else {})) for n in range(1, 6)]
    batch += [entry("careless", n, **({"fail_once": True, "careless": True} if n == 3 else {})) for n in range(1, 6)]
    sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not entries(log, "failed", "careful"):
        assert loop.time() < deadline, "the batch never ran"
        await asyncio.sleep(0.05)
    # Sent while 3, 4 and 5 of its group are in flight (or back in the queue): it must wait for them.
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"n": 6}), MessageGroupId="careful", MessageDeduplicationId="6"
    )
    while len(entries(log, "processed", "careful")) < 6 or len(entries(log, "processed", "careless")) < 5:
        assert loop.time() < deadline, (entries(log, "processed", "careful"), entries(log, "processed", "careless"))
        await asyncio.sleep(0.05)

    assert entries(log, "failed", "careful") == entries(log, "failed", "careless") == [3]
    assert entries(log, "processed", "careful") == [1, 2, 3, 4, 5, 6]
    # As on Lambda: 4 and 5 were reported successful after 3 failed, so they were deleted, and 3 came last.
    assert entries(log, "processed", "careless") == [1, 2, 4, 5, 3]
    mapping = await frames_mapping(server)
    assert (mapping["out_of_order"], mapping["invalid_answers"]) == (2, 0)
