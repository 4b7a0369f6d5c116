"""Retries with exponential backoff for up to the retry window, losses logged and counted, and isolation:
a receiver that is down, slow or failing delays nothing else (docs/sources.md#webhooks; issue 3 "Bad input")."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.serverproc import ServerProcess, free_port
from tests.webhooks.support import (
    APP_A,
    APP_B,
    PusherSocket,
    Receiver,
    metric,
    python_sdk_validates,
    server_config,
)

StartServer = Callable[..., ServerProcess]
FAST_RETRIES = {"retry_initial_backoff_seconds": 0.2, "retry_max_backoff_seconds": 1.0}
OCCUPIED_ONLY = ["channel_occupied"]


def hook(receiver: Receiver, path: str = "/hook") -> dict[str, object]:
    return {"url": receiver.url(path), "event_types": OCCUPIED_ONLY}


@pytest.mark.parametrize("failure", [500, 503, 408, 409, 425, 429])
async def test_retryable_failures_are_retried_with_backoff_until_delivered_once(
    failure: int, start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.scripts["/hook"] = [failure, failure]
    server = start_server(server_config([{**APP_A, "webhooks": [hook(receiver)]}], **FAST_RETRIES))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await receiver.wait_events(1, timeout=5)
    await asyncio.sleep(0.8)  # nothing more comes once delivered

    attempts = receiver.at(ok_only=False)
    assert [r.status for r in attempts] == [failure, failure, 200]
    assert all(r.events == [{"name": "channel_occupied", "channel": "news"}] for r in attempts)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert 0.09 <= gaps[0] <= 0.6  # equal jitter: between half and all of 0.2 s (plus scheduling)
    assert 0.19 <= gaps[1] <= 0.9  # then of 0.4 s
    times = [r.payload["time_ms"] for r in attempts]
    assert times == sorted(set(times))  # each attempt is stamped and signed afresh...
    assert python_sdk_validates(APP_A, attempts[-1]) is not None  # ...so the SDKs' freshness check passes
    assert metric(server.metrics_port, "webhooks_failed", APP_A["id"]) == 2
    assert metric(server.metrics_port, "webhooks_delivered", APP_A["id"]) == 1
    assert metric(server.metrics_port, "webhooks_lost", APP_A["id"]) == 0
    await client.close()


async def test_receiver_down_then_up_gets_the_webhook_on_a_retry(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    """Connection refused is a network error: retried until the receiver starts listening."""
    port = free_port()
    config = server_config(
        [{**APP_A, "webhooks": [{"url": f"http://127.0.0.1:{port}/hook", "event_types": OCCUPIED_ONLY}]}],
        **FAST_RETRIES,
    )
    server = start_server(config)
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await asyncio.sleep(0.7)
    late = await Receiver().start(port)
    try:
        await late.wait_events(1, timeout=5)
        assert late.events() == [{"name": "channel_occupied", "channel": "news"}]
        assert metric(server.metrics_port, "webhooks_failed", APP_A["id"]) >= 1
    finally:
        await late.stop()
        await client.close()


async def test_gives_up_after_the_retry_window_and_logs_and_counts_the_loss(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.scripts["/hook"] = [500] * 100
    config = server_config([{**APP_A, "webhooks": [hook(receiver)]}], **FAST_RETRIES, retry_max_elapsed_seconds=1.5)
    server = start_server(config)
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    start = time.monotonic()
    await receiver.wait_for(lambda: metric(server.metrics_port, "webhooks_lost", APP_A["id"]) == 1, timeout=6)
    attempts = len(receiver.at(ok_only=False))
    await asyncio.sleep(0.8)

    assert len(receiver.at(ok_only=False)) == attempts  # no attempt after giving up
    assert 3 <= attempts <= 8
    assert receiver.at(ok_only=False)[-1].at - start < 2.5
    assert "webhook lost" in server.output()
    assert "channel_occupied@news" in server.output()
    await client.close()


async def test_a_final_4xx_is_not_retried_and_counts_as_lost(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.scripts["/hook"] = [404]
    server = start_server(server_config([{**APP_A, "webhooks": [hook(receiver)]}], **FAST_RETRIES))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await receiver.wait_for(lambda: len(receiver.at(ok_only=False)) == 1)
    await asyncio.sleep(0.8)
    assert [r.status for r in receiver.at(ok_only=False)] == [404]
    assert metric(server.metrics_port, "webhooks_lost", APP_A["id"]) == 1
    await client.close()


async def test_down_receiver_of_one_app_does_not_hold_up_another_app(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    apps = [
        {**APP_A, "webhooks": [{"url": down, "event_types": OCCUPIED_ONLY}]},
        {**APP_B, "webhooks": [hook(receiver)]},
    ]
    server = start_server(server_config(apps, **FAST_RETRIES))
    failing = await PusherSocket.connect(session, server.ws_url, APP_A)
    for n in range(20):
        await failing.subscribe(f"a-{n}")
    healthy = await PusherSocket.connect(session, server.ws_url, APP_B)
    subscribed = time.monotonic()
    await healthy.subscribe("b-news")
    await receiver.wait_events(1, timeout=3)
    assert receiver.at()[0].at - subscribed < 1.0
    assert python_sdk_validates(APP_B, receiver.at()[0]) is not None
    await failing.close()
    await healthy.close()


async def test_slow_receiver_neither_slows_clients_nor_starves_other_apps(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """App A's receiver answers after 5 s (past the 2 s request timeout) and A keeps emitting. With 4 delivery
    slots, A may hold one; B's webhook still leaves at once (were A to hold all four, B would wait 2 s) and
    A's clients still get fast answers."""
    receiver.delays["/slow"] = 5.0
    apps = [
        {**APP_A, "webhooks": [hook(receiver, "/slow")]},
        {**APP_B, "webhooks": [hook(receiver, "/fast")]},
    ]
    server = start_server(server_config(apps, **FAST_RETRIES, concurrency=4, request_timeout_seconds=2.0))
    busy = await PusherSocket.connect(session, server.ws_url, APP_A)
    for n in range(12):
        await busy.subscribe(f"a-{n}")
    await receiver.wait_for(lambda: len(receiver.at("/slow", ok_only=False)) >= 1)

    started = time.monotonic()
    await busy.subscribe("a-late")  # a client of the slow app is answered at once
    await busy.send("pusher:ping", {})
    await busy.expect("pusher:pong")
    client_latency = time.monotonic() - started

    other = await PusherSocket.connect(session, server.ws_url, APP_B)
    subscribed = time.monotonic()
    await other.subscribe("b-news")
    await receiver.wait_events(1, path="/fast", timeout=3)

    assert client_latency < 0.3
    assert receiver.at("/fast")[0].at - subscribed < 1.0
    assert len(receiver.at("/slow", ok_only=False)) <= 2  # A is held to its share of the slots
    await busy.close()
    await other.close()
