"""The dispatcher on its own: real memory queue and store, real Prometheus metrics, a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from shared.apps.config import ConfigAppStore
from shared.metrics.prometheus import PrometheusMetrics
from shared.settings import AppConfig, WebhookConfig, WebhookSettings
from shared.store.base import Connection, Member
from shared.store.memory import MemoryChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from shared.webhooks.base import WebhookJob
from shared.webhooks.dispatcher import WebhookDispatcher
from shared.webhooks.http_target import HttpWebhookTarget, Urllib3Client
from shared.webhooks.memory import MemoryWebhookQueue
from shared.webhooks.targets import Targets, create_targets
from tests.serverproc import free_port
from tests.webhooks.support import APP_A, Receiver, python_sdk_validates

FAST = {"retry_initial_backoff_seconds": 0.05, "retry_max_backoff_seconds": 0.2, "retry_max_elapsed_seconds": 2.0}


@dataclass
class Rig:
    app: AppConfig
    queue: MemoryWebhookQueue
    store: MemoryChannelStore
    metrics: PrometheusMetrics
    dispatcher: WebhookDispatcher

    def job(self, name: str, channel: str, target: int = 0, **fields: Any) -> WebhookJob:
        return WebhookJob(
            app_id=self.app.id, event={"name": name, "channel": channel, **fields}, target=target, time_ms=0
        )

    def client_event(self, channel: str = "private-chat", target: int = 0) -> WebhookJob:
        """An event with no state to re-check, so retries of it are never dropped as stale."""
        return self.job("client_event", channel, target, event="client-x", data="{}", socket_id="1.1")

    def count(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(f"sockless_{name}_total", {"app_id": self.app.id}) or 0.0

    async def join(self, channel: str, socket: str = "1.1", user: str | None = None) -> None:
        await self.store.add_connection(Connection(self.app.id, SocketId(socket), 0.0), None)
        member = Member(UserId(user)) if user is not None else None
        await self.store.subscribe(self.app.id, SocketId(socket), ChannelName(channel), member, 100)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The dispatcher's own loop, as the local server runs it."""
        task = asyncio.create_task(self.dispatcher.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def settle(self, timeout: float = 5.0) -> None:
        """Run the dispatcher until the queue is empty."""
        await self.dispatcher.drain(timeout)


def rig(
    http: aiohttp.ClientSession, hooks: list[dict[str, Any]], targets: Targets | None = None, **settings: Any
) -> Rig:
    app = AppConfig.model_validate({**APP_A, "webhooks": hooks})
    queue = MemoryWebhookQueue()
    store = MemoryChannelStore()
    metrics = PrometheusMetrics()
    dispatcher = WebhookDispatcher(
        queue=queue,
        apps=ConfigAppStore((app,)),
        store=store,
        targets=targets or create_targets(http=http),
        settings=WebhookSettings(**{**FAST, **settings}),
        metrics=metrics,
    )
    return Rig(app, queue, store, metrics, dispatcher)


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    dispatcher = WebhookDispatcher(
        queue=MemoryWebhookQueue(),
        apps=ConfigAppStore(()),
        store=MemoryChannelStore(),
        targets=Targets(None, None),
        settings=WebhookSettings(retry_initial_backoff_seconds=1.0, retry_max_backoff_seconds=60.0),
    )
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        samples = [dispatcher.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempt, min(samples), max(samples))
        assert max(samples) - min(samples) > ceiling / 10  # jittered, not a fixed schedule


async def test_delivers_a_signed_pusher_body_and_acks(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    r = rig(http, [{"url": receiver.url()}])
    await r.queue.push(r.job("channel_occupied", "news"))
    await r.settle()
    assert receiver.events() == [{"name": "channel_occupied", "channel": "news"}]
    assert python_sdk_validates(APP_A, receiver.at()[0]) is not None
    assert await r.queue.pending() == 0
    assert r.count("webhooks_delivered") == 1


async def test_delayed_vacated_is_dropped_when_the_channel_is_occupied_again(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    r = rig(http, [{"url": receiver.url()}])
    await r.join("news")
    await r.queue.push(r.job("channel_vacated", "news"))
    await r.queue.push(r.job("channel_vacated", "empty"))
    await r.settle()
    assert receiver.events() == [{"name": "channel_vacated", "channel": "empty"}]
    assert await r.queue.pending() == 0


async def test_delayed_member_removed_is_dropped_when_the_member_is_back(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    r = rig(http, [{"url": receiver.url()}])
    await r.join("presence-room", user="u1")
    await r.queue.push(r.job("member_removed", "presence-room", user_id="u1"))
    await r.queue.push(r.job("member_removed", "presence-room", user_id="u2"))
    await r.settle()
    assert receiver.events() == [{"name": "member_removed", "channel": "presence-room", "user_id": "u2"}]


async def test_a_retried_arrival_is_dropped_once_the_state_changed_again(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    """A late retry of channel_occupied after the channel emptied would contradict the vacated already sent."""
    r = rig(http, [{"url": receiver.url()}])
    await r.join("presence-room", user="u1")
    await r.queue.push(_retried(r.job("channel_occupied", "gone")))
    await r.queue.push(_retried(r.job("channel_occupied", "presence-room")))
    await r.queue.push(_retried(r.job("member_added", "presence-room", user_id="u9")))
    await r.settle()
    assert receiver.events() == [{"name": "channel_occupied", "channel": "presence-room"}]


def _retried(job: WebhookJob) -> WebhookJob:
    return WebhookJob(
        job.app_id, job.event, job.target, job.time_ms, attempts=1, first_attempt_ms=int(time.time() * 1000)
    )


async def test_jobs_for_an_unknown_app_or_target_or_unwanted_event_are_dropped(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    """The app's config may have changed between emit and delivery: never deliver what it no longer asks for."""
    r = rig(http, [{"url": receiver.url(), "event_types": ["channel_occupied"]}])
    await r.queue.push(WebhookJob(AppId("no-such-app"), {"name": "channel_occupied", "channel": "a"}, 0, 0))
    await r.queue.push(r.job("channel_occupied", "a", target=3))
    await r.queue.push(r.job("client_event", "private-a"))
    await r.settle()
    assert receiver.requests == []
    assert await r.queue.pending() == 0


async def test_retries_then_delivers_once(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    receiver.scripts["/hook"] = [500, 429, 502]
    r = rig(http, [{"url": receiver.url()}])
    await r.queue.push(r.client_event())
    await r.settle()
    assert [req.status for req in receiver.requests] == [500, 429, 502, 200]
    assert r.count("webhooks_failed") == 3
    assert r.count("webhooks_delivered") == 1
    assert r.count("webhooks_lost") == 0


async def test_lost_after_the_window_is_logged_and_counted(
    receiver: Receiver, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.scripts["/hook"] = [503] * 100
    r = rig(http, [{"url": receiver.url() + "?token=secret-value"}], retry_max_elapsed_seconds=0.5)
    await r.queue.push(r.client_event("private-news"))
    await r.queue.push(r.client_event("private-sport"))
    with caplog.at_level(logging.WARNING, logger="sockless.webhooks"):
        await r.settle()
    assert r.count("webhooks_lost") == 2
    assert await r.queue.pending() == 0
    lost = [rec.getMessage() for rec in caplog.records if "webhook lost" in rec.getMessage()]
    assert lost and "HTTP 503" in lost[0] and "client_event@private-news" in "".join(lost)
    assert all("secret-value" not in rec.getMessage() for rec in caplog.records)  # URLs logged without query
    last_attempt = receiver.requests[-1].at - receiver.requests[0].at
    assert 0.3 <= last_attempt <= 0.8  # retried up to the end of the window, not beyond


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 302])
async def test_final_statuses_are_not_retried(status: int, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    receiver.scripts["/hook"] = [status]
    r = rig(http, [{"url": receiver.url()}])
    await r.queue.push(r.job("channel_occupied", "news"))
    await r.settle()
    assert [req.status for req in receiver.requests] == [status]
    assert r.count("webhooks_lost") == 1


async def test_a_target_kind_without_a_driver_is_lost_not_retried(http: aiohttp.ClientSession) -> None:
    r = rig(http, [{"url": "http://127.0.0.1:9/hook"}], targets=Targets(http=None, lambda_=None))
    await r.queue.push(r.job("channel_occupied", "news"))
    await r.settle()
    assert r.count("webhooks_lost") == 1


async def test_batches_are_per_target_and_at_most_batch_size(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    r = rig(http, [{"url": receiver.url("/one")}, {"url": receiver.url("/two")}], batching=True, batch_size=3)
    for n in range(4):
        for target in (0, 1):
            await r.queue.push(r.job("channel_occupied", f"c{n}", target=target))
    async with r.running():
        await receiver.wait_events(4, "/one")
        await receiver.wait_events(4, "/two")
    for path in ("/one", "/two"):
        assert sorted(len(req.events) for req in receiver.at(path)) == [1, 3]
        assert sorted(e["channel"] for e in receiver.events(path)) == ["c0", "c1", "c2", "c3"]


async def test_a_slow_target_holds_at_most_its_share_of_the_slots(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.delays["/slow"] = 0.8
    r = rig(
        http,
        [{"url": receiver.url("/slow")}, {"url": receiver.url("/fast")}],
        concurrency=8,
        retry_max_elapsed_seconds=30,
    )
    assert r.dispatcher.per_target == 2
    for n in range(10):
        await r.queue.push(r.job("channel_occupied", f"s{n}", target=0))
    await r.queue.push(r.job("channel_occupied", "f0", target=1))
    start = time.monotonic()
    async with r.running():
        await receiver.wait_events(1, "/fast", timeout=2)
        fast_after = time.monotonic() - start
        await asyncio.sleep(0.2)
        slow_in_flight = len(receiver.at("/slow", ok_only=False))
        await receiver.wait_events(10, "/slow", timeout=10)
    assert fast_after < 0.5  # were the slow target holding all 8 slots, 0.8 s
    assert slow_in_flight <= 2  # two slots for the slow target, the others stay free
    assert r.count("webhooks_lost") == 0  # jobs pushed back while the target was busy are not attempts


async def test_drain_delivers_jobs_that_come_due_within_the_grace(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    r = rig(http, [{"url": receiver.url()}])
    await r.queue.push(r.job("channel_vacated", "news"), delay_seconds=0.3)
    start = time.monotonic()
    await r.dispatcher.drain(3.0)
    assert receiver.events() == [{"name": "channel_vacated", "channel": "news"}]
    assert time.monotonic() - start < 1.0


async def test_drain_stops_at_its_deadline_when_a_receiver_keeps_failing(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.scripts["/hook"] = [500] * 100
    r = rig(http, [{"url": receiver.url()}], retry_max_elapsed_seconds=60)
    await r.queue.push(r.client_event())
    start = time.monotonic()
    await r.dispatcher.drain(0.5)
    assert 0.45 <= time.monotonic() - start < 1.0
    assert await r.queue.pending() == 1  # still queued (a persistent queue would keep it)


async def test_urllib3_client_for_lambda_delivers_and_reports_network_errors(receiver: Receiver) -> None:
    """The client the Lambda worker uses (aiohttp is not in the Lambda bundle)."""
    target = HttpWebhookTarget(Urllib3Client())
    ok = await target.deliver(WebhookConfig(url=receiver.url()), b'{"time_ms":1,"events":[]}', {"X-A": "1"}, 2.0)
    down = await target.deliver(WebhookConfig(url=f"http://127.0.0.1:{free_port()}/"), b"{}", {}, 2.0)
    receiver.scripts["/hook"] = [503]
    failing = await target.deliver(WebhookConfig(url=receiver.url()), b"{}", {}, 2.0)
    assert ok.ok and receiver.requests[0].headers["x-a"] == "1"
    assert not down.ok and down.retryable and "network error" in down.detail
    assert not failing.ok and failing.retryable


async def test_http_timeout_is_a_retryable_network_error(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    receiver.delays["/hook"] = 1.0
    target = create_targets(http=http).http
    assert target is not None
    start = time.monotonic()
    outcome = await target.deliver(WebhookConfig(url=receiver.url()), b"{}", {}, 0.2)
    assert time.monotonic() - start < 0.6
    assert not outcome.ok and outcome.retryable
