"""Every Pusher webhook event, emitted by the real server for real WebSocket clients, signed so that both
official SDKs accept it (docs/sources.md#webhooks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.serverproc import ServerProcess
from tests.webhooks.support import (
    APP_A,
    PusherSocket,
    Receiver,
    node_sdk_validates,
    python_sdk_validates,
    server_config,
)

StartServer = Callable[..., ServerProcess]


def app_with_hook(receiver: Receiver, **hook: Any) -> dict[str, Any]:
    return {**APP_A, "webhooks": [{"url": receiver.url(), **hook}]}


async def test_occupied_and_vacated_are_signed_and_both_sdks_accept_them(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    server = start_server(server_config([app_with_hook(receiver)]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await receiver.wait_events(1, name="channel_occupied")
    await client.close()
    await receiver.wait_events(1, name="channel_vacated")

    requests = receiver.at()
    assert [e for r in requests for e in r.events if e["name"] in ("channel_occupied", "channel_vacated")] == [
        {"name": "channel_occupied", "channel": "news"},
        {"name": "channel_vacated", "channel": "news"},
    ]
    for request in requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-pusher-key"] == APP_A["key"]
        assert set(request.payload) == {"time_ms", "events"}
        assert abs(request.payload["time_ms"] - time.time() * 1000) < 10_000
        assert python_sdk_validates(APP_A, request) == request.payload
    node = node_sdk_validates(APP_A, requests)
    assert [result["valid"] for result in node] == [True] * len(requests)
    assert [result["events"] for result in node] == [request.events for request in requests]


async def test_both_sdks_reject_a_webhook_signed_with_another_secret_or_altered(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """The validators above can fail: the same request checked against the wrong secret, or with one byte
    changed, is refused by both SDKs."""
    server = start_server(server_config([app_with_hook(receiver)]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await receiver.wait_events(1, name="channel_occupied")
    genuine = receiver.at()[0]
    altered = type(genuine)(**{**vars(genuine), "body": genuine.body.replace(b"news", b"news2")})
    other_secret = {**APP_A, "secret": "not-the-secret"}

    assert python_sdk_validates(other_secret, genuine) is None
    assert python_sdk_validates(APP_A, altered) is None
    assert [r["valid"] for r in node_sdk_validates(other_secret, [genuine])] == [False]
    assert [r["valid"] for r in node_sdk_validates(APP_A, [altered])] == [False]
    await client.close()


async def test_presence_members_added_and_removed_once_per_user(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """member_added on a user's first socket, member_removed (after the delay) when the last one leaves."""
    server = start_server(server_config([app_with_hook(receiver)]))
    first = await PusherSocket.connect(session, server.ws_url, APP_A)
    second = await PusherSocket.connect(session, server.ws_url, APP_A)
    await first.subscribe("presence-room", "u1", {"name": "Ada"})
    await second.subscribe("presence-room", "u1", {"name": "Ada"})
    await receiver.wait_events(1, name="member_added")
    await second.close()
    await asyncio.sleep(0.6)  # twice the configured delay: u1 still has a socket, so nothing is removed
    assert receiver.events(name="member_removed") == []

    await first.close()
    await receiver.wait_events(1, name="member_removed")
    await receiver.wait_events(1, name="channel_vacated")
    assert receiver.events(name="member_added") == [
        {"name": "member_added", "channel": "presence-room", "user_id": "u1"}
    ]
    assert receiver.events(name="member_removed") == [
        {"name": "member_removed", "channel": "presence-room", "user_id": "u1"}
    ]
    assert all(python_sdk_validates(APP_A, r) for r in receiver.at())


async def test_client_event_carries_event_data_socket_id_and_presence_user_id(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    server = start_server(server_config([app_with_hook(receiver, event_types=["client_event"])]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("private-chat")
    await client.subscribe("presence-chat", "u7", None)
    await client.send("client-typing", {"text": "hé"}, channel="private-chat")
    await client.send("client-typing", "raw string", channel="presence-chat")
    await receiver.wait_events(2, name="client_event")

    assert receiver.events() == [
        {
            "name": "client_event",
            "channel": "private-chat",
            "event": "client-typing",
            "data": json.dumps({"text": "hé"}, separators=(",", ":"), ensure_ascii=False),
            "socket_id": client.socket_id,
        },
        {
            "name": "client_event",
            "channel": "presence-chat",
            "event": "client-typing",
            "data": "raw string",
            "socket_id": client.socket_id,
            "user_id": "u7",
        },
    ]
    assert json.loads(receiver.events()[0]["data"]) == {"text": "hé"}
    assert [r["valid"] for r in node_sdk_validates(APP_A, receiver.at())] == [True, True]
    await client.close()


async def test_cache_miss_when_a_cache_channel_has_nothing_cached(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    server = start_server(server_config([app_with_hook(receiver, event_types=["cache_miss"])]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("cache-scores")
    await receiver.wait_events(1)
    assert receiver.events() == [{"name": "cache_miss", "channel": "cache-scores"}]
    assert python_sdk_validates(APP_A, receiver.at()[0]) is not None
    await client.close()


async def test_subscription_count_follows_subscribers(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    server = start_server(server_config([app_with_hook(receiver, event_types=["subscription_count"])]))
    first = await PusherSocket.connect(session, server.ws_url, APP_A)
    second = await PusherSocket.connect(session, server.ws_url, APP_A)
    await first.subscribe("scores")
    await receiver.wait_events(1)
    await second.subscribe("scores")
    await receiver.wait_events(2)
    counts = [e["subscription_count"] for e in receiver.events()]
    assert counts == [1, 2]
    assert receiver.events()[0] == {"name": "subscription_count", "channel": "scores", "subscription_count": 1}
    await first.close()
    await second.close()


async def test_custom_headers_are_sent_but_cannot_replace_the_signature(
    start_server: StartServer, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Bearer hook-token", "x-pusher-signature": "forged", "X-Tenant": "t1"}
    server = start_server(server_config([app_with_hook(receiver, headers=headers)]))
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("news")
    await receiver.wait_events(1)
    request = receiver.at()[0]
    assert request.headers["authorization"] == "Bearer hook-token"
    assert request.headers["x-tenant"] == "t1"
    assert request.headers["x-pusher-signature"] != "forged"
    assert python_sdk_validates(APP_A, request) is not None
    await client.close()
