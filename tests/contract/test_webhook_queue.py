"""The ``WebhookQueue`` contract (shared/webhooks/base.py): delays respected, ``receive`` waits, at-least-once
delivery with ``ack`` and a visibility timeout, jobs intact.

Delays are whole seconds so drivers with second granularity (SQS ``DelaySeconds``) run the same suite.
"""

from __future__ import annotations

import asyncio
import time

from shared.types import AppId
from shared.webhooks.base import WebhookJob, WebhookQueue
from tests.contract.drivers import QUEUE_VISIBILITY_TIMEOUT


def job(n: int = 0, name: str = "channel_occupied") -> WebhookJob:
    return WebhookJob(
        app_id=AppId("app-1"), event={"name": name, "channel": f"ch-{n}"}, target=0, time_ms=1_700_000_000_000 + n
    )


async def receive_all(queue: WebhookQueue, count: int, timeout: float = 5.0) -> list[WebhookJob]:
    received: list[WebhookJob] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received += await queue.receive(10, 1.0)
    return received


async def test_pushed_job_is_received_intact(webhook_queue: WebhookQueue) -> None:
    sent = WebhookJob(
        app_id=AppId("app-1"),
        event={"name": "client_event", "channel": "private-a", "event": "client-x", "data": '{"é":1}', "user_id": "7"},
        target=1,
        time_ms=1_700_000_000_123,
        attempts=2,
        first_attempt_ms=1_700_000_000_000,
    )
    await webhook_queue.push(sent)
    received = await webhook_queue.receive(10, 2.0)
    assert received == [sent]
    assert received[0].id == sent.id


async def test_every_ready_job_is_received_exactly_once(webhook_queue: WebhookQueue) -> None:
    """No ordering is promised (SQS standard queues do not keep it), only that nothing is lost or doubled."""
    jobs = [job(n) for n in range(5)]
    for item in jobs:
        await webhook_queue.push(item)
    received = await receive_all(webhook_queue, 5)
    assert sorted(j.id for j in received) == sorted(j.id for j in jobs)
    assert await webhook_queue.receive(10, 0.0) == []


async def test_receive_returns_at_most_max_items(webhook_queue: WebhookQueue) -> None:
    for n in range(5):
        await webhook_queue.push(job(n))
    first = await webhook_queue.receive(2, 1.0)
    assert 1 <= len(first) <= 2
    rest = await receive_all(webhook_queue, 5 - len(first))
    assert len(first) + len(rest) == 5


async def test_delayed_job_is_invisible_until_its_delay_passes(webhook_queue: WebhookQueue) -> None:
    delayed = job(1, "channel_vacated")
    start = time.monotonic()
    await webhook_queue.push(delayed, delay_seconds=1.0)
    assert await webhook_queue.receive(10, 0.0) == []
    assert await webhook_queue.pending() == 1
    received = await webhook_queue.receive(10, 3.0)
    assert received == [delayed]
    assert time.monotonic() - start >= 0.95


async def test_a_delayed_job_does_not_hold_back_ready_ones(webhook_queue: WebhookQueue) -> None:
    await webhook_queue.push(job(1, "channel_vacated"), delay_seconds=2.0)
    ready = job(2)
    await webhook_queue.push(ready)
    start = time.monotonic()
    assert await webhook_queue.receive(10, 1.0) == [ready]
    assert time.monotonic() - start < 0.9


async def test_receive_waits_up_to_wait_seconds_when_empty(webhook_queue: WebhookQueue) -> None:
    start = time.monotonic()
    assert await webhook_queue.receive(10, 1.0) == []
    assert 0.9 <= time.monotonic() - start < 2.5


async def test_receive_wakes_up_when_a_job_arrives(webhook_queue: WebhookQueue) -> None:
    arriving = job(3)

    async def push_later() -> None:
        await asyncio.sleep(0.2)
        await webhook_queue.push(arriving)

    start = time.monotonic()
    pusher = asyncio.create_task(push_later())
    received = await webhook_queue.receive(10, 5.0)
    await pusher
    assert received == [arriving]
    assert time.monotonic() - start < 2.0


async def test_acked_jobs_are_gone_for_good(webhook_queue: WebhookQueue) -> None:
    await webhook_queue.push(job(1))
    received = await webhook_queue.receive(10, 1.0)
    assert len(received) == 1
    await webhook_queue.ack(received)
    assert await webhook_queue.pending() == 0
    await asyncio.sleep(QUEUE_VISIBILITY_TIMEOUT + 0.3)
    assert await webhook_queue.receive(10, 0.0) == []


async def test_received_job_is_hidden_then_redelivered_if_never_acked(webhook_queue: WebhookQueue) -> None:
    """At least once: a worker that dies before ``ack`` loses nothing."""
    sent = job(1)
    await webhook_queue.push(sent)
    assert await webhook_queue.receive(10, 1.0) == [sent]
    assert await webhook_queue.receive(10, 0.0) == []
    assert await webhook_queue.pending() == 1
    again = await webhook_queue.receive(10, QUEUE_VISIBILITY_TIMEOUT + 2.0)
    assert again == [sent]
    await webhook_queue.ack(again)
    assert await webhook_queue.pending() == 0


async def test_ack_is_idempotent(webhook_queue: WebhookQueue) -> None:
    await webhook_queue.push(job(1))
    await webhook_queue.push(job(2))
    first = await receive_all(webhook_queue, 2)
    await webhook_queue.ack(first[:1])
    await webhook_queue.ack(first[:1])
    await webhook_queue.ack([job(99)])  # never received: no receipt
    assert await webhook_queue.pending() == 1
    await webhook_queue.ack(first)
    assert await webhook_queue.pending() == 0


async def test_pending_counts_visible_delayed_and_in_flight_jobs(webhook_queue: WebhookQueue) -> None:
    assert await webhook_queue.pending() == 0
    await webhook_queue.push(job(1))
    await webhook_queue.push(job(2), delay_seconds=60)
    assert await webhook_queue.pending() == 2
    in_flight = await webhook_queue.receive(10, 1.0)
    assert len(in_flight) == 1
    assert await webhook_queue.pending() == 2


def test_job_round_trips_through_a_dict() -> None:
    """Remote queues carry ``to_dict()`` as JSON; the job must come back equal, without the receipt."""
    original = WebhookJob(
        app_id=AppId("a"), event={"name": "member_added", "channel": "presence-x", "user_id": "1"}, target=0, time_ms=5
    )
    assert "receipt" not in original.to_dict()
    assert WebhookJob.from_dict(original.to_dict()) == original


async def test_check_health(webhook_queue: WebhookQueue) -> None:
    assert await webhook_queue.check_health() is True
