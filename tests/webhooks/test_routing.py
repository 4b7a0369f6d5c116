"""Per-app targets: each gets only its ``event_types`` and the channels its filter matches; batching groups
events per app and per target (Sockudo's ``batching {duration 50 ms, size 100}``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.serverproc import ServerProcess
from tests.webhooks.support import (
    APP_A,
    APP_B,
    PusherSocket,
    Receiver,
    node_sdk_validates,
    python_sdk_validates,
    server_config,
)

StartServer = Callable[..., ServerProcess]


def occupied(receiver: Receiver, path: str) -> list[str]:
    return sorted(e["channel"] for e in receiver.events(path, "channel_occupied"))


async def test_each_target_gets_only_its_event_types_and_matching_channels(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    hooks: list[dict[str, Any]] = [
        {"url": receiver.url("/all")},
        {"url": receiver.url("/prefix"), "filter": {"channel_prefix": "private-"}},
        {"url": receiver.url("/suffix"), "filter": {"channel_suffix": "-room"}},
        {"url": receiver.url("/pattern"), "filter": {"channel_pattern": r"^presence-game-\d+$"}},
        {"url": receiver.url("/both"), "filter": {"channel_prefix": "private-", "channel_suffix": "-room"}},
        {"url": receiver.url("/clients"), "event_types": ["client_event"]},
    ]
    server = start_server(server_config([{**APP_A, "webhooks": hooks}]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    channels = ["news", "private-a", "chat-room", "private-chat-room", "presence-game-42", "presence-game-x"]
    for channel in channels:
        await client.subscribe(channel, user_id="u1")
    await client.send("client-move", {"x": 1}, channel="presence-game-42")
    await receiver.wait_events(len(channels), "/all", "channel_occupied")
    await receiver.wait_events(1, "/clients")
    await asyncio.sleep(0.3)

    assert occupied(receiver, "/all") == sorted(channels)
    assert occupied(receiver, "/prefix") == ["private-a", "private-chat-room"]
    assert occupied(receiver, "/suffix") == ["chat-room", "private-chat-room"]
    assert occupied(receiver, "/pattern") == ["presence-game-42"]
    assert occupied(receiver, "/both") == ["private-chat-room"]
    assert [e["name"] for e in receiver.events("/clients")] == ["client_event"]
    assert {e["name"] for e in receiver.events("/all")} >= {"channel_occupied", "member_added", "client_event"}
    assert {e["name"] for e in receiver.events("/prefix")} == {"channel_occupied", "subscription_count"}
    await client.close()


async def test_batching_sends_the_events_of_a_window_in_one_request_per_app_and_target(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    apps = [
        {
            **APP_A,
            "webhooks": [
                {"url": receiver.url("/a1")},
                {"url": receiver.url("/a2"), "event_types": ["channel_occupied"]},
            ],
        },
        {**APP_B, "webhooks": [{"url": receiver.url("/b")}]},
    ]
    server = start_server(server_config(apps, batching=True, batch_duration_ms=300))
    a = await PusherSocket.connect(session, server.ws_url, APP_A)
    b = await PusherSocket.connect(session, server.ws_url, APP_B)
    for n in range(5):  # sent back to back: all inside one batching window
        await a.send("pusher:subscribe", a.subscribe_frame(f"a-{n}"))
    await b.send("pusher:subscribe", b.subscribe_frame("b-0"))
    await receiver.wait_events(5, "/a2")
    await receiver.wait_events(5, "/a1", "channel_occupied")
    await receiver.wait_events(1, "/b")
    await asyncio.sleep(0.2)

    assert len(receiver.at("/a2")) == 1
    assert occupied(receiver, "/a2") == [f"a-{n}" for n in range(5)]
    assert len(receiver.at("/a1")) == 1  # occupied and subscription_count events of the window together
    assert {e["name"] for e in receiver.events("/a1")} == {"channel_occupied", "subscription_count"}
    assert [e["channel"] for e in receiver.events("/b")] == ["b-0"]  # never mixed with app A's
    for path in ("/a1", "/a2"):
        assert python_sdk_validates(APP_A, receiver.at(path)[0]) is not None
    assert [r["valid"] for r in node_sdk_validates(APP_B, receiver.at("/b"))] == [True]
    await a.close()
    await b.close()


async def test_batches_hold_at_most_batch_size_events(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    hooks = [{"url": receiver.url(), "event_types": ["channel_occupied"]}]
    server = start_server(
        server_config([{**APP_A, "webhooks": hooks}], batching=True, batch_size=2, batch_duration_ms=200)
    )
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    for n in range(5):
        await client.send("pusher:subscribe", client.subscribe_frame(f"c-{n}"))
    await receiver.wait_events(5)
    assert sorted(len(r.events) for r in receiver.at()) == [1, 2, 2]
    await client.close()


async def test_without_batching_every_event_is_its_own_request(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    hooks = [{"url": receiver.url(), "event_types": ["channel_occupied"]}]
    server = start_server(server_config([{**APP_A, "webhooks": hooks}]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    for n in range(5):
        await client.send("pusher:subscribe", client.subscribe_frame(f"c-{n}"))
    await receiver.wait_events(5)
    assert [len(r.events) for r in receiver.at()] == [1] * 5
    await client.close()
