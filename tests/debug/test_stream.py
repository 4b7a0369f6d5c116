"""The console's stream against the real server and real pusher-js clients: what the page is fed."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import aiohttp

from tests.conftest import DEFAULT_APP
from tests.debug.sse import Stream, channel
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess

HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")


async def test_the_console_is_off_unless_configured(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    for path in ("/debug", "/debug/stream?app=100001", "/debug/session", "/debug/debug.js"):
        async with http.get(server.url + path) as response:
            assert response.status == 404, path
    async with http.post(server.url + "/debug/apps/100001/events", json={}) as response:
        assert response.status == 404


async def test_a_pusher_js_client_is_followed_from_connect_to_disconnect(
    console: ServerProcess, http: aiohttp.ClientSession, js: NodeDriver, app: App
) -> None:
    stream = await Stream.open(http, console.url)
    try:
        assert (await stream.next())["type"] == "hello"
        alice = await js.client("alice", app, console.port, user={"user_id": "alice", "user_info": {"name": "Alice"}})
        alice_id = await alice.socket_id()
        await stream.event("connection", socket_id=alice_id)

        await alice.subscribe("news")
        subscribed = await stream.event("subscribed", socket_id=alice_id, channel="news")
        assert (subscribed["subscription_count"], subscribed["occupied"]) == (1, True)
        bob = await js.client("bob", app, console.port, user={"user_id": "bob", "user_info": {"name": "Bob"}})
        await bob.subscribe("news")
        state = await stream.state(lambda s: (channel(s, "news") or {}).get("subscription_count") == 2)
        assert state["connections"] == 2

        await alice.subscribe("presence-room")
        await bob.subscribe("presence-room")
        state = await stream.state(lambda s: (channel(s, "presence-room") or {}).get("user_count") == 2)
        room = channel(state, "presence-room")
        assert room is not None
        assert sorted((m["id"], m["info"]["name"]) for m in room["members"]) == [("alice", "Alice"), ("bob", "Bob")]

        assert await alice.trigger("presence-room", "client-typing", {"typing": True})
        event = await stream.event("client_event", socket_id=alice_id, channel="presence-room")
        assert (event["event"], event["data"], event["user_id"]) == ("client-typing", '{"typing":true}', "alice")

        await bob.unsubscribe("news")
        left = await stream.event("unsubscribed", channel="news")
        assert left["subscription_count"] == 1

        await alice.disconnect()
        gone = await stream.event("disconnection", socket_id=alice_id)
        assert gone["code"] is not None
        assert sorted(gone["channels"]) == ["news", "presence-room"]
        await stream.state(lambda s: s["connections"] == 1 and channel(s, "news") is None)
    finally:
        stream.close()


async def test_the_event_creator_publishes_through_the_rest_api(
    console: ServerProcess, http: aiohttp.ClientSession, js: NodeDriver, app: App
) -> None:
    stream = await Stream.open(http, console.url)
    try:
        reader = await js.client("reader", app, console.port)
        await reader.subscribe("orders", "created")
        url = f"{console.url}/debug/apps/100001/events"
        async with http.post(url, json={"channel": "orders", "name": "created", "data": '{"id":7}'}) as response:
            assert response.status == 200
            assert await response.json() == {}
        received = await reader.expect("created", "orders")
        assert received["data"] == {"id": 7}
        published = await stream.event("api_message", event="created")
        assert (published["channels"], published["data"]) == (["orders"], '{"id":7}')

        # The REST handler's own validation answers, so this is the same path an SDK's request takes.
        async with http.post(url, json={"channel": "orders", "name": "", "data": "x"}) as response:
            assert response.status == 400
            assert "event name" in (await response.json())["error"]
        async with http.post(url, json={"channel": "orders", "name": "big", "data": "x" * 11000}) as response:
            assert response.status == 413
        # Excluding the reader's own socket, as an SDK's socket_id does.
        excluded = {"channel": "orders", "name": "created", "data": "{}", "socket_id": await reader.socket_id()}
        async with http.post(url, json=excluded) as response:
            assert response.status == 200
        await reader.assert_no("created", "orders", kind="event")
    finally:
        stream.close()


async def test_event_creator_requests_must_be_same_origin_json(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    url = f"{console.url}/debug/apps/100001/events"
    body = '{"channel": "a", "name": "b", "data": "c"}'
    async with http.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 403
    evil = {"Content-Type": "application/json", "Origin": "http://evil.example"}
    async with http.post(url, data=body, headers=evil) as response:
        assert response.status == 403
    async with http.post(f"{console.url}/debug/apps/nope/events", json={}) as response:
        assert response.status == 404


async def test_auth_failures_are_shown_without_secrets_or_signatures(
    console: ServerProcess, http: aiohttp.ClientSession, js: NodeDriver, app: App
) -> None:
    stream = await Stream.open(http, console.url)
    try:
        good = await js.client("good", app, console.port, user={"user_id": "u1", "user_info": {"n": 1}})
        await good.subscribe("private-ok")  # signed correctly: its auth signature must not show either
        await good.subscribe("presence-ok")
        mallory = await js.client("mallory", app, console.port, wrong_secret=True)
        await mallory.subscribe("private-vault", succeed=False)
        await mallory.expect("pusher:subscription_error", "private-vault")
        refused = await stream.event("error", channel="private-vault", socket_id=await mallory.socket_id())
        assert "Invalid signature" in refused["message"]
        assert refused["error"] == "SubscriptionError"
        url = f"{console.url}/debug/apps/100001/events"
        async with http.post(url, json={"channel": "private-ok", "name": "n", "data": "d"}) as response:
            assert response.status == 200  # signed server-side: auth_signature and body_md5 stay there
        await stream.event("api_message", event="n")
        await asyncio.sleep(1.2)  # a state and a rate message too
        await stream.state(lambda s: channel(s, "presence-ok") is not None)
    finally:
        stream.close()
    assert DEFAULT_APP["secret"] not in stream.raw
    assert not HEX_SIGNATURE.search(stream.raw)


async def test_refused_handshakes_of_a_known_app_are_shown_with_their_code(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    stream = await Stream.open(http, console.url)
    try:
        async with http.ws_connect(f"{console.ws_url}/app/{DEFAULT_APP['key']}") as ws:  # no ?protocol=
            await ws.receive(timeout=5)
            assert (await ws.receive(timeout=5)).data == 4008
        refused = await stream.event("error", code=4008)
        assert refused["error"] == "NoProtocolVersion"
        assert "socket_id" not in refused
    finally:
        stream.close()


async def test_messages_per_second_counts_frames_sent_to_clients(
    console: ServerProcess, http: aiohttp.ClientSession, js: NodeDriver, app: App
) -> None:
    readers = [await js.client(f"r{n}", app, console.port) for n in range(3)]
    for reader in readers:
        await reader.subscribe("ticker", "tick")
    stream = await Stream.open(http, console.url)
    try:
        url = f"{console.url}/debug/apps/100001/events"
        for n in range(10):
            async with http.post(url, json={"channel": "ticker", "name": "tick", "data": str(n)}) as response:
                assert response.status == 200
        rate = await stream.wait(lambda m: m.get("type") == "rate" and m["messages_per_second"] > 0, 4, "a rate")
        assert rate["messages_per_second"] <= 30 / 0.5
        quiet = await stream.wait(
            lambda m: m.get("type") == "rate" and m["messages_per_second"] == 0, 4, "quiet", fresh=True
        )
        assert quiet["dropped"] == 0
    finally:
        stream.close()


async def test_a_slow_console_tab_never_slows_the_server_and_learns_what_it_missed(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A tab that stops reading: its socket fills, its buffer (10 events here) overflows and drops, while
    REST publishes keep their usual speed; when it reads again it is told how many it lost."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", console.port))
    stalled.sendall(
        f"GET /debug/stream?app=100001&buffer=10 HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n\r\n".encode()
    )
    try:
        await asyncio.sleep(0.3)
        url = f"{console.url}/debug/apps/100001/events"
        # Each publish is one ~20 KB event on the stream (100 long channel names): 600 of them are far more
        # than the kernel buffers plus the tab's 10 events can hold.
        channels = [f"slow-{n:03d}-" + "x" * 180 for n in range(100)]
        body = {"channels": channels, "name": "bulk", "data": "y" * 2000}
        timings = []
        for _ in range(600):
            started = time.perf_counter()
            async with http.post(url, json=body) as response:
                assert response.status == 200
            timings.append(time.perf_counter() - started)
        timings.sort()
        assert timings[len(timings) // 2] < 0.1, f"median publish {timings[len(timings) // 2]:.3f}s"
        assert timings[-5] < 1.0
        async with http.get(f"{console.url}/up") as response:
            assert response.status == 200

        stalled.setblocking(False)
        loop = asyncio.get_running_loop()
        seen = b""
        deadline = loop.time() + 20
        while b'"type":"dropped"' not in seen and loop.time() < deadline:
            chunk = await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), 5)
            assert chunk, "stream closed"
            seen = seen[-100_000:] + chunk
        match = re.search(rb'"type":"dropped","count":(\d+)', seen)
        assert match is not None, "the tab was never told it missed events"
        assert int(match[1]) > 100
    finally:
        stalled.close()
