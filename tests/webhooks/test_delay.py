"""Pusher's 3 s delay for ``channel_vacated``/``member_removed``, and its cancellation: "if a user disconnects
and then reconnects within 3 seconds, neither event will be delivered via webhook" (docs/sources.md#webhooks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.serverproc import ServerProcess
from tests.webhooks.support import APP_A, PusherSocket, Receiver, server_config

StartServer = Callable[..., ServerProcess]
DEPARTURES = ("channel_vacated", "member_removed")


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events]


async def test_vacated_and_member_removed_wait_the_default_3_seconds(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    app = {**APP_A, "webhooks": [{"url": receiver.url(), "event_types": ["channel_occupied", *DEPARTURES]}]}
    server = start_server({"apps": [app], "shutdown_grace_seconds": 1})  # no delay override: the real default
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    subscribed = time.monotonic()
    await client.subscribe("presence-lobby", "u1")
    await receiver.wait_events(1, name="channel_occupied")
    occupied_after = receiver.at()[0].at - subscribed

    await client.close()
    closed = time.monotonic()
    await receiver.wait_events(1, name="channel_vacated", timeout=8)
    await receiver.wait_events(1, name="member_removed", timeout=2)
    departures = [r for r in receiver.at() if any(e["name"] in DEPARTURES for e in r.events)]

    assert occupied_after < 1.0  # arrivals are not delayed
    for request in departures:
        assert 2.9 <= request.at - closed < 5.0, request.at - closed


async def test_reconnect_within_the_delay_sends_neither_departure_nor_arrival(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A page reload: the user's only socket closes and a new one joins 0.2 s later. The receiver must see
    the user stay (one member_added, one channel_occupied), then leave for real when the second socket goes."""
    server = start_server(server_config([{**APP_A, "webhooks": [{"url": receiver.url()}]}], delay_seconds=1.0))
    first = await PusherSocket.connect(session, server.ws_url, APP_A)
    await first.subscribe("presence-lobby", "u1")
    await receiver.wait_events(1, name="member_added")
    await first.close()
    await asyncio.sleep(0.2)
    second = await PusherSocket.connect(session, server.ws_url, APP_A)
    await second.subscribe("presence-lobby", "u1")

    await asyncio.sleep(1.8)  # well past the 1 s delay of the first socket's departures
    # Each event is its own request and requests run concurrently (webhooks.concurrency): the two may arrive in
    # either order, as Pusher's may; what matters is that nothing else came.
    assert sorted(names(receiver.events())) == ["channel_occupied", "member_added"]

    await second.close()
    await receiver.wait_events(1, name="channel_vacated", timeout=4)
    await receiver.wait_events(1, name="member_removed", timeout=2)
    assert sorted(names(receiver.events())) == sorted(
        ["channel_occupied", "member_added", "member_removed", "channel_vacated"]
    )


async def test_public_channel_resubscribed_within_the_delay_is_never_vacated(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    server = start_server(server_config([{**APP_A, "webhooks": [{"url": receiver.url()}]}], delay_seconds=1.0))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("ticker")
    await receiver.wait_events(1, name="channel_occupied")
    await client.send("pusher:unsubscribe", {"channel": "ticker"})
    await asyncio.sleep(0.3)
    await client.subscribe("ticker")
    await asyncio.sleep(1.7)
    assert [e for e in receiver.events() if e["name"] != "subscription_count"] == [
        {"name": "channel_occupied", "channel": "ticker"}
    ]
    await client.close()


async def test_departure_after_the_delay_is_delivered_then_a_rejoin_is_announced(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Past the delay, leaving and coming back are two real state changes: both are sent, in order."""
    config = server_config(
        [{**APP_A, "webhooks": [{"url": receiver.url(), "event_types": ["member_added", "member_removed"]}]}],
        delay_seconds=0.3,
    )
    server = start_server(config)
    first = await PusherSocket.connect(session, server.ws_url, APP_A)
    await first.subscribe("presence-lobby", "u1")
    await first.close()
    await receiver.wait_events(1, name="member_removed", timeout=3)
    second = await PusherSocket.connect(session, server.ws_url, APP_A)
    await second.subscribe("presence-lobby", "u1")
    await receiver.wait_events(2, name="member_added")
    assert names(receiver.events()) == ["member_added", "member_removed", "member_added"]
    await second.close()


async def test_sigterm_delivers_pending_departures_before_exiting(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Shutdown closes every socket (4200), which vacates channels; their delayed webhooks are still sent
    within ``shutdown_grace_seconds`` before the process exits."""
    config = server_config([{**APP_A, "webhooks": [{"url": receiver.url()}]}], delay_seconds=0.5)
    server = start_server({**config, "shutdown_grace_seconds": 5})
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("presence-lobby", "u1")
    await receiver.wait_events(1, name="member_added")

    code = await asyncio.to_thread(server.stop)  # blocking wait in a thread: the receiver shares this loop
    assert code == 0
    assert sorted(names(receiver.events())) == ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
