"""The ``WebhookQueue`` contract (shared/webhooks/base.py): delays respected, ``receive`` waits, jobs intact.

Delays are whole seconds so drivers with second granularity (SQS ``DelaySeconds``) run the same suite.
"""

from __future__ import annotations

import asyncio
import time

from shared.types import AppId
from shared.webhooks.base import WebhookJob, WebhookQueue


def job(n: int = 0, name: str = "channel_occupied") -> WebhookJob:
    return WebhookJob(app_id=AppId("app-1"), event={"name": name, "channel": f"ch-{n}"}, time_ms=1_700_000_000_000 + n)


async def test_pushed_job_is_received_intact(webhook_queue: WebhookQueue) -> None:
    sent = WebhookJob(
        app_id=AppId("app-1"),
        event={"name": "client_event", "channel": "private-a", "event": "client-x", "data": '{"é":1}', "user_id": "7"},
        time_ms=1_700_000_000_123,
        attempts=2,
        first_attempt_ms=1_700_000_000_000,
        target=1,
    )
    await webhook_queue.push(sent)
    assert await webhook_queue.receive(10, 2.0) == [sent]


async def test_every_ready_job_is_received_exactly_once(webhook_queue: WebhookQueue) -> None:
    """No ordering is promised (SQS standard queues do not keep it), only that nothing is lost or doubled."""
    jobs = [job(n) for n in range(5)]
    for item in jobs:
        await webhook_queue.push(item)
    received: list[WebhookJob] = []
    deadline = time.monotonic() + 5
    while len(received) < 5 and time.monotonic() < deadline:
        received += await webhook_queue.receive(10, 1.0)
    assert sorted(j.id for j in received) == sorted(j.id for j in jobs)
    assert await webhook_queue.receive(10, 0.0) == []


async def test_receive_returns_at_most_max_items(webhook_queue: WebhookQueue) -> None:
    for n in range(5):
        await webhook_queue.push(job(n))
    first = await webhook_queue.receive(2, 1.0)
    assert 1 <= len(first) <= 2
    rest: list[WebhookJob] = []
    while len(first) + len(rest) < 5:
        batch = await webhook_queue.receive(10, 1.0)
        assert batch, "jobs were lost"
        rest += batch
    assert len(first) + len(rest) == 5


async def test_delayed_job_is_invisible_until_its_delay_passes(webhook_queue: WebhookQueue) -> None:
    delayed = job(1, "channel_vacated")
    start = time.monotonic()
    await webhook_queue.push(delayed, delay_seconds=1.0)
    assert await webhook_queue.receive(10, 0.0) == []
    assert webhook_queue.pending() == 1
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


async def test_received_jobs_are_gone_from_the_queue(webhook_queue: WebhookQueue) -> None:
    await webhook_queue.push(job(1))
    assert len(await webhook_queue.receive(10, 1.0)) == 1
    assert await webhook_queue.receive(10, 0.0) == []
    assert webhook_queue.pending() == 0


def test_job_round_trips_through_a_dict() -> None:
    """Remote queues carry ``to_dict()`` as JSON; the job must come back equal."""
    original = WebhookJob(
        app_id=AppId("a"), event={"name": "member_added", "channel": "presence-x", "user_id": "1"}, time_ms=5
    )
    assert WebhookJob.from_dict(original.to_dict()) == original


async def test_check_health(webhook_queue: WebhookQueue) -> None:
    assert await webhook_queue.check_health() is True
