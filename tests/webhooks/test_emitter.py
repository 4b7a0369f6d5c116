"""The emitter: one job per event and per target that wants it; departures delayed; arrivals within the delay
of a departure suppressed (Pusher: "neither event will be delivered"). Real memory queue and rate limiter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.engine.emitter import WebhookEmitter
from shared.limits.memory import MemoryRateLimiter
from shared.settings import AppConfig
from shared.webhooks.base import WebhookJob
from shared.webhooks.memory import MemoryWebhookQueue
from tests.contract import drivers
from tests.webhooks.support import APP_A


def app_with(*hooks: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate({**APP_A, "webhooks": list(hooks)})


ONE_HOOK = app_with({"url": "http://127.0.0.1:1/hook"})


def emitter(delay: float = 0.2) -> WebhookEmitter:
    return WebhookEmitter(MemoryWebhookQueue(), delay_seconds=delay, limiter=MemoryRateLimiter())


async def ready(emitter: WebhookEmitter, wait: float = 0.0) -> list[WebhookJob]:
    return await emitter.queue.receive(100, wait)


def described(jobs: list[WebhookJob]) -> list[tuple[int, str, str]]:
    return sorted((job.target, job.event["name"], job.event["channel"]) for job in jobs)


async def test_one_job_per_target_that_wants_the_event() -> None:
    app = app_with(
        {"url": "http://h/all"},
        {"url": "http://h/private", "filter": {"channel_prefix": "private-"}},
        {"url": "http://h/clients", "event_types": ["client_event"]},
    )
    sink = emitter()
    await sink.emit(app, "channel_occupied", "private-a")
    await sink.emit(app, "channel_occupied", "public")
    await sink.emit(app, "client_event", "private-a", event="client-x", data="{}", socket_id="1.2", user_id=None)
    jobs = await ready(sink)
    assert described(jobs) == [
        (0, "channel_occupied", "private-a"),
        (0, "channel_occupied", "public"),
        (0, "client_event", "private-a"),
        (1, "channel_occupied", "private-a"),
        (1, "client_event", "private-a"),
        (2, "client_event", "private-a"),
    ]
    client_event = next(job.event for job in jobs if job.target == 2)
    assert client_event == {
        "name": "client_event",
        "channel": "private-a",
        "event": "client-x",
        "data": "{}",
        "socket_id": "1.2",
    }  # a None user_id is left out, not sent as null


async def test_nothing_is_queued_when_no_target_wants_the_event() -> None:
    sink = emitter()
    await sink.emit(app_with({"url": "http://h/x", "event_types": ["member_added"]}), "channel_occupied", "a")
    await sink.emit(AppConfig.model_validate(APP_A), "channel_occupied", "a")
    assert await sink.queue.pending() == 0


async def test_departures_wait_for_the_delay() -> None:
    sink = emitter(delay=0.3)
    await sink.emit(ONE_HOOK, "member_removed", "presence-a", user_id="u1")
    await sink.emit(ONE_HOOK, "channel_vacated", "presence-a")
    assert await ready(sink) == []
    await asyncio.sleep(0.35)
    assert described(await ready(sink)) == [(0, "channel_vacated", "presence-a"), (0, "member_removed", "presence-a")]


async def test_arrival_within_the_delay_of_a_departure_is_not_emitted() -> None:
    sink = emitter(delay=0.3)
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await sink.emit(ONE_HOOK, "member_removed", "presence-a", user_id="u1")
    await sink.emit(ONE_HOOK, "channel_occupied", "a")
    await sink.emit(ONE_HOOK, "member_added", "presence-a", user_id="u1")
    await sink.emit(ONE_HOOK, "member_added", "presence-a", user_id="u2")  # another user: a real arrival
    await sink.emit(ONE_HOOK, "channel_occupied", "b")  # another channel: a real arrival
    assert described(await ready(sink)) == [(0, "channel_occupied", "b"), (0, "member_added", "presence-a")]
    await asyncio.sleep(0.35)
    assert described(await ready(sink)) == [(0, "channel_vacated", "a"), (0, "member_removed", "presence-a")]


async def test_arrival_after_the_delay_is_emitted() -> None:
    sink = emitter(delay=0.2)
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await asyncio.sleep(0.25)
    await sink.emit(ONE_HOOK, "channel_occupied", "a")
    assert described(await ready(sink)) == [(0, "channel_occupied", "a"), (0, "channel_vacated", "a")]


async def test_a_second_departure_while_one_is_pending_is_not_queued_twice() -> None:
    """vacated, (suppressed) occupied, vacated: the first pending job will see the channel empty; one is enough."""
    sink = emitter(delay=0.3)
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await sink.emit(ONE_HOOK, "channel_occupied", "a")
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await asyncio.sleep(0.35)
    assert described(await ready(sink)) == [(0, "channel_vacated", "a")]


async def test_subscribe_then_leave_at_once_still_queues_the_departure() -> None:
    """The arrival's probe of the marker must never hide the departure that follows it."""
    sink = emitter(delay=0.1)
    await sink.emit(ONE_HOOK, "channel_occupied", "a")
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await asyncio.sleep(0.15)
    assert described(await ready(sink)) == [(0, "channel_occupied", "a"), (0, "channel_vacated", "a")]


async def test_zero_delay_means_no_debounce() -> None:
    sink = emitter(delay=0.0)
    await sink.emit(ONE_HOOK, "channel_vacated", "a")
    await sink.emit(ONE_HOOK, "channel_occupied", "a")
    assert described(await ready(sink)) == [(0, "channel_occupied", "a"), (0, "channel_vacated", "a")]


@pytest.mark.parametrize("driver", drivers.params(drivers.LIMITER_DRIVERS))
async def test_back_to_back_join_leave_join_emits_one_arrival_on_every_limiter(driver: str) -> None:
    """React StrictMode mounts twice: subscribe, unsubscribe, subscribe in one packet. The rejoin lands in
    the departure's delay whatever shares the markers (memory, Redis, DynamoDB)."""
    async with drivers.LIMITER_DRIVERS[driver]() as limiter:
        sink = WebhookEmitter(MemoryWebhookQueue(), delay_seconds=0.3, limiter=limiter)
        await sink.emit(ONE_HOOK, "channel_occupied", "a")
        await sink.emit(ONE_HOOK, "channel_vacated", "a")
        await sink.emit(ONE_HOOK, "channel_occupied", "a")
        assert described(await ready(sink)) == [(0, "channel_occupied", "a")]
        await asyncio.sleep(0.35)  # the departure comes due; the dispatcher will find the channel occupied
        assert described(await ready(sink)) == [(0, "channel_vacated", "a")]
