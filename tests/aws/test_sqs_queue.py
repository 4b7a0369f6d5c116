"""What ``SqsWebhookQueue`` adds to the ``WebhookQueue`` contract (run in tests/contract): the message format,
SQS's whole-second and 900 s delay limits, Lambda event records, and what it does with a malformed body."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.errors import StoreUnavailable
from shared.types import AppId
from shared.webhooks.base import WebhookJob
from shared.webhooks.sqs import SqsWebhookQueue
from tests.aws import backend

EVENTS = Path(__file__).parent.parent / "events"


def job(n: int = 0, name: str = "channel_occupied") -> WebhookJob:
    return WebhookJob(app_id=AppId("app-1"), event={"name": name, "channel": f"ch-{n}"}, target=0, time_ms=1_000 + n)


@pytest.fixture
def sqs(aws: None) -> tuple[Any, str]:
    client = backend.client("sqs")
    url = client.create_queue(QueueName="webhooks", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    return client, url


@pytest.fixture
async def queue(sqs: tuple[Any, str]) -> AsyncIterator[SqsWebhookQueue]:
    client, url = sqs
    driver = SqsWebhookQueue(url, client=client)
    yield driver
    await driver.close()


async def test_the_message_body_is_the_job_as_json(queue: SqsWebhookQueue, sqs: tuple[Any, str]) -> None:
    """The Lambda handler and any other consumer read the same format: ``WebhookJob.to_dict()``."""
    client, url = sqs
    sent = job(1, "client_event")
    await queue.push(sent)
    message = client.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]
    assert json.loads(message["Body"]) == sent.to_dict()


async def test_a_fractional_delay_is_rounded_up_never_down(queue: SqsWebhookQueue) -> None:
    """A delayed member_removed re-checked early could see a state that is about to come back."""
    start = time.monotonic()
    await queue.push(job(1, "member_removed"), delay_seconds=0.2)
    assert await queue.receive(10, 0.0) == []
    assert len(await queue.receive(10, 3.0)) == 1
    assert time.monotonic() - start >= 0.95


async def test_a_delay_beyond_sqs_limit_is_clamped_to_900_seconds(queue: SqsWebhookQueue) -> None:
    await queue.push(job(1), delay_seconds=5000)
    assert await queue.pending() == 1
    assert await queue.receive(10, 0.0) == []


async def test_receive_gathers_more_than_one_sqs_batch(queue: SqsWebhookQueue) -> None:
    for n in range(25):
        await queue.push(job(n))
    received = await queue.receive(25, 1.0)
    assert 10 < len(received) <= 25
    assert len({j.id for j in received}) == len(received)


async def test_a_malformed_body_is_dropped_not_redelivered_forever(
    queue: SqsWebhookQueue, sqs: tuple[Any, str]
) -> None:
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody="not a job")
    await queue.push(job(1))
    received = await queue.receive(10, 1.0)
    received += await queue.receive(10, 0.0)
    assert [j.event["channel"] for j in received] == ["ch-1"]
    await queue.ack(received)
    assert await queue.pending() == 0


def test_jobs_come_from_lambda_sqs_records_with_their_receipt() -> None:
    records = json.loads((EVENTS / "sqs_webhooks.json").read_text())["Records"]
    jobs = [SqsWebhookQueue.job_from_record(record) for record in records]
    first = jobs[0]
    assert first is not None
    assert first.event == {"name": "channel_occupied", "channel": "my-channel"}
    assert first.receipt == records[0]["receiptHandle"]
    assert SqsWebhookQueue.job_from_record({"body": "{}", "receiptHandle": "r"}) is None


async def test_an_unreachable_queue_is_store_unavailable(aws: None) -> None:
    queue = SqsWebhookQueue("https://sqs.us-east-1.amazonaws.com/123456789012/missing", client=backend.client("sqs"))
    with pytest.raises(StoreUnavailable, match="SQS send_message"):
        await queue.push(job())
    assert await queue.check_health() is False
    await queue.close()
