"""The debug tap on its own: bounded buffers that drop and count, per-app delivery, and the secret scrub."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from shared.debug import DebugTap, TapMetrics
from shared.debug.tap import MAX_TEXT, REDACTED
from shared.engine.observer import NULL_OBSERVER
from shared.metrics.base import NullMetrics
from shared.settings import AppConfig
from shared.types import AppId
from tests.unit.engine_harness import Harness


def events(items: list[str]) -> list[dict[str, object]]:
    return [json.loads(item) for item in items]


async def test_publishing_without_subscribers_does_nothing() -> None:
    tap = DebugTap()
    assert not tap.active
    tap.connected("app", "1.1")  # no subscriber: nothing is built or kept
    subscription = tap.subscribe()
    assert await subscription.get(timeout=0) == ([], 0)


async def test_a_slow_subscriber_keeps_the_newest_events_and_counts_the_dropped() -> None:
    tap = DebugTap(buffer_size=10)
    subscription = tap.subscribe()
    started = time.perf_counter()
    for n in range(1000):
        tap.connected("app", f"{n}.0")
    assert time.perf_counter() - started < 1.0  # publishing never waits for the reader
    items, dropped = await subscription.get(timeout=0)
    assert [e["socket_id"] for e in events(items)] == [f"{n}.0" for n in range(990, 1000)]
    assert dropped == 990
    assert subscription.total_dropped == 990
    tap.connected("app", "x.0")
    assert (len((await subscription.get(timeout=0))[0]), subscription.total_dropped) == (1, 990)


async def test_one_slow_subscriber_does_not_make_another_lose_events() -> None:
    tap = DebugTap()
    slow = tap.subscribe(maxsize=5)
    fast = tap.subscribe(maxsize=100)
    for n in range(50):
        tap.connected("app", f"{n}.0")
    assert len((await fast.get(timeout=0))[0]) == 50
    assert (await slow.get(timeout=0))[1] == 45


async def test_subscribers_only_get_their_apps_and_every_app_free_event() -> None:
    tap = DebugTap()
    mine = tap.subscribe({"a"})
    tap.connected("a", "1.1")
    tap.connected("b", "2.2")
    tap.lambda_invocation("sockless-connect", 12.5)
    got = events((await mine.get(timeout=0))[0])
    assert [(e["type"], e.get("app_id")) for e in got] == [("connection", "a"), ("lambda", None)]


async def test_get_waits_for_the_next_event_and_close_releases_it() -> None:
    tap = DebugTap()
    subscription = tap.subscribe()
    waiter = asyncio.create_task(subscription.get(timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    tap.client_event("a", "1.1", "private-x", "client-hi", '{"a":1}', None)
    items, _ = await asyncio.wait_for(waiter, 1)
    assert events(items)[0]["event"] == "client-hi"
    waiter = asyncio.create_task(subscription.get(timeout=5))
    await asyncio.sleep(0.01)
    subscription.close()
    assert await asyncio.wait_for(waiter, 1) == ([], 0)
    assert not tap.active


async def test_events_published_from_another_thread_wake_the_reader() -> None:
    """The emulator's Lambda containers are worker threads with their own loops."""
    tap = DebugTap()
    subscription = tap.subscribe()
    waiter = asyncio.create_task(subscription.get(timeout=5))
    await asyncio.sleep(0.01)
    thread = threading.Thread(target=tap.lambda_invocation, args=("sockless-message", 3.2))
    thread.start()
    items, _ = await asyncio.wait_for(waiter, 2)
    thread.join()
    assert events(items)[0]["function"] == "sockless-message"


async def test_secrets_and_signatures_are_scrubbed_wherever_they_appear() -> None:
    tap = DebugTap(redact=["app-secret-value", "admin-token-1"])
    subscription = tap.subscribe()
    signature = "ab" * 32
    tap.client_event(
        "a", "1.1", "private-x", "client-leak", f'{{"s":"app-secret-value","auth":"key:{signature}"}}', None
    )
    tap.refused("a", "1.1", 4009, "token admin-token-1 is wrong", None, "Unauthorized")
    text = "".join((await subscription.get(timeout=0))[0])
    assert "app-secret-value" not in text
    assert "admin-token-1" not in text
    assert signature not in text
    assert text.count(REDACTED) == 3


async def test_large_event_data_is_clipped_with_its_size() -> None:
    tap = DebugTap()
    subscription = tap.subscribe()
    tap.api_message("a", ["big"], "ev", "x" * (MAX_TEXT + 500), None)
    data = events((await subscription.get(timeout=0))[0])[0]["data"]
    assert isinstance(data, str)
    assert data.endswith("(+500 chars)")
    assert len(data) < MAX_TEXT + 50


async def test_tap_metrics_pass_everything_on_and_count_frames_sent_per_app() -> None:
    tap = DebugTap()
    metrics = TapMetrics(NullMetrics(), tap)
    metrics.count("ws_messages_sent", "a", 3)
    metrics.count("ws_messages_received", "a", 5)
    metrics.count("ws_messages_sent", "b")
    assert tap.sent == {"a": 3, "b": 1}


async def test_the_engine_reports_its_lifecycle_to_its_tap() -> None:
    """Connect, subscribe (with the resulting count), a client event, a REST publish, an auth failure and the
    disconnect with its close code, in order."""
    app = AppConfig(id=AppId("a"), key="a-key", secret="a-secret-value", enable_client_messages=True)
    tap = DebugTap()
    harness = Harness(app, tap=tap)
    subscription = tap.subscribe()
    client = await harness.connect("a-key")
    await client.join("presence-room", user_id="u1", user_info={"name": "Ann"})
    await client.trigger("client-typing", "presence-room", {"on": True})
    await harness.engine.publish(app, ["presence-room"], "breaking", '{"n":1}')
    await client.subscribe("private-x", auth="a-key:" + "0" * 64)
    await harness.engine.disconnect(app, client.socket_id, close_code=1001)
    got = events((await subscription.get(timeout=0))[0])
    assert [e["type"] for e in got] == [
        "connection",
        "subscribed",
        "client_event",
        "api_message",
        "error",
        "disconnection",
    ]
    assert {k: got[1][k] for k in ("channel", "subscription_count", "occupied", "user_id")} == {
        "channel": "presence-room",
        "subscription_count": 1,
        "occupied": True,
        "user_id": "u1",
    }
    assert (got[2]["event"], got[2]["data"], got[2]["user_id"]) == ("client-typing", '{"on":true}', "u1")
    assert (got[3]["channels"], got[3]["event"]) == (["presence-room"], "breaking")
    assert (got[4]["error"], got[4]["channel"]) == ("SubscriptionError", "private-x")
    assert "0" * 64 not in json.dumps(got)
    assert (got[5]["code"], got[5]["channels"]) == (1001, ["presence-room"])
    assert tap.sent["a"] >= 2  # subscription_succeeded and the publish, at least


async def test_without_a_tap_the_engine_reports_nothing_and_counts_as_before() -> None:
    harness = Harness(AppConfig(id=AppId("a"), key="a-key", secret="a-secret-value"))
    assert harness.engine.observer is NULL_OBSERVER
    client = await harness.connect("a-key")
    await client.subscribe("news")
    assert client.events()[-1] == "pusher_internal:subscription_succeeded"
