"""What is different on the Lambda code path, and what must hold there under concurrency and failure.

API Gateway has no custom close codes, runs every frame as its own concurrent invocation and sends
``$disconnect`` best effort; these tests pin down what clients see because of that (docs/aws.md), and
prove the guarantees that must survive it: exactly-once presence transitions and webhooks under
simultaneous subscribe/unsubscribe/disconnect, and no ghost member when ``$disconnect`` never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import pytest

from local_server.emulator.websocket import LOSE_DISCONNECT
from tests.conftest import DEFAULT_APP
from tests.e2e.jsdriver import App, NodeDriver, error_code
from tests.e2e.test_abuse import ABUSIVE, abuse
from tests.serverproc import ServerProcess
from tests.webhooks.support import APP_A, PusherSocket, Receiver, python_sdk_validates

pytestmark = pytest.mark.e2e

StartServer = Callable[..., ServerProcess]
DELAY = 1.0  # webhooks.delay_seconds: member_removed/channel_vacated wait this long, then SQS rounds up


def hooked(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    """An emulator config: the numeric app with a webhook to ``receiver``, a short Pusher delay."""
    return {
        "apps": [DEFAULT_APP, {**APP_A, "webhooks": [{"url": receiver.url()}]}],
        "webhooks": {"delay_seconds": DELAY},
        **extra,
    }


def sdk(server: ServerProcess) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=APP_A["id"], key=APP_A["key"], secret=APP_A["secret"], host="127.0.0.1", port=server.port, ssl=False
    )


async def member_ids(server: ServerProcess, channel: str) -> set[str]:
    users = await asyncio.to_thread(sdk(server).users_info, channel)
    return {u["id"] for u in users["users"]}


async def drain(ws: aiohttp.ClientWebSocketResponse, seen: list[dict[str, Any]], until: float) -> None:
    """Read frames into ``seen`` until the socket closes or ``until`` (loop time) passes."""
    loop = asyncio.get_running_loop()
    while (left := until - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return
        seen.append(json.loads(msg.data))


# -- what clients see differently ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        pytest.param("/app/no-such-key?protocol=7", 4001, id="unknown-key-4001"),
        pytest.param("/app/app-key", 4008, id="no-protocol-4008"),
        pytest.param("/app/app-key?protocol=9", 4007, id="unsupported-protocol-4007"),
    ],
)
async def test_a_refusal_is_a_pusher_error_first_frame_then_a_normal_close(
    server: ServerProcess, path: str, code: int
) -> None:
    # API Gateway's DeleteConnection always closes with 1000: the Pusher code travels in the frame only.
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url + path) as ws:
        first = await ws.receive_json(timeout=10)
        assert first == {"event": "pusher:error", "data": {"code": code, "message": first["data"]["message"]}}
        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1000


async def test_client_events_over_the_rate_limit_are_each_refused_with_4301_or_delivered_once(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    # Each frame is its own Lambda invocation: the limit is applied when an invocation runs, so which
    # events of a burst pass, and their order, is not fixed (docs/aws.md). What must hold: every event is
    # delivered exactly once or refused with 4301, and the connection stays.
    alice = await js.client("alice", app, server.port)
    bob = await js.client("bob", app, server.port)
    await alice.subscribe("private-burst", "client-n")
    await bob.subscribe("private-burst", "client-n")
    burst = 30  # the app allows 10 per second
    for n in range(burst):
        await alice.trigger("private-burst", "client-n", {"n": n})

    def delivered() -> list[int]:
        return [
            r["data"]["n"]
            for r in js.matching(
                lambda r: r.get("client") == "bob" and r.get("event") == "client-n" and r["report"] == "event"
            )
        ]

    def refused() -> int:
        return len(
            js.matching(lambda r: r.get("client") == "alice" and r["report"] == "error" and error_code(r) == 4301)
        )

    deadline = asyncio.get_running_loop().time() + 20
    while len(delivered()) + refused() < burst:
        assert asyncio.get_running_loop().time() < deadline, (delivered(), refused())
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert len(delivered()) + refused() == burst and len(set(delivered())) == len(delivered())
    assert refused() > 0 and len(delivered()) >= 10
    assert (await alice.info())["state"] == "connected"


async def test_a_connection_that_keeps_exceeding_the_client_event_limit_is_deleted(
    start_server: StartServer,
) -> None:
    # The local server closes with 4301 (tests/e2e/test_abuse.py); API Gateway's DeleteConnection can only
    # close with 1000, so the Pusher code travels in the last pusher:error frame (docs/cost.md#abuse).
    server = start_server({"apps": [ABUSIVE]})
    errors, code = await abuse(server)
    assert code == 1000
    assert errors and {e["code"] for e in errors} == {4301}
    assert "closing" in errors[-1]["message"]


async def test_terminate_closes_the_users_connections_which_pusher_js_then_reopens(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    # Pusher closes with 4009 and pusher-js stays away; API Gateway can only close with 1000, which
    # pusher-js answers by reconnecting (docs/aws.md "What differs"). The old connections are gone.
    laptop = await js.client("laptop", app, server.port, signin={"id": "alice"})
    await laptop.signin()
    bob = await js.client("bob", app, server.port, signin={"id": "bob"})
    await bob.signin()
    before, bob_before = await laptop.socket_id(), await bob.socket_id()
    reply = await js.sdk_terminate_user(app, server.port, "alice")
    assert reply["status"] == 200, reply
    await laptop.expect_state("connecting", timeout=10)
    await laptop.expect_state("connected", timeout=10)
    assert await laptop.socket_id() != before
    assert await bob.socket_id() == bob_before and (await bob.info())["state"] == "connected"


async def test_the_quota_slot_frees_once_disconnect_has_run(start_server: StartServer) -> None:
    # $disconnect is an invocation that runs after the close: the slot is free a moment later, not at once.
    single = {"id": "single-id", "key": "single-key", "secret": "single-secret", "max_connections": 1}
    server = start_server({"apps": [single]})
    url = f"{server.ws_url}/app/single-key?protocol=7&client=raw&version=0"
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(url)
        assert (await first.receive_json(timeout=10))["event"] == "pusher:connection_established"
        async with http.ws_connect(url) as second:
            refused = await second.receive_json(timeout=10)
            assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4004
        await first.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            async with http.ws_connect(url) as third:
                if (await third.receive_json(timeout=10))["event"] == "pusher:connection_established":
                    break
            assert loop.time() < deadline, "the slot never came back"
            await asyncio.sleep(0.2)


async def test_an_idle_connection_is_closed_with_1001_and_leaves_like_any_other(
    start_server: StartServer, receiver: Receiver
) -> None:
    # API Gateway's idle timeout (10 min, 2 s here): a client that pings stays, a silent one is closed. Each
    # client pings from the moment it is connected until the test wants it silent, so no slow invocation (a
    # subscribe on a loaded machine) leaves a client idle longer than the timeout before it is meant to be.
    server = start_server(hooked(receiver), args=("--idle-timeout", "2"))
    channel = "presence-idle"
    async with aiohttp.ClientSession() as http:
        alice = await PusherSocket.connect(http, server.ws_url, APP_A)
        async with pinging(alice):
            await alice.subscribe(channel, "alice")
            bob = await PusherSocket.connect(http, server.ws_url, APP_A)
            async with pinging(bob):
                await bob.subscribe(channel, "bob")
            # bob is silent from here on
            frame = await alice.expect("pusher_internal:member_removed", channel, timeout=15)
            assert json.loads(frame["data"]) == {"user_id": "bob"}
            closing = await bob.ws.receive(timeout=5)
            while closing.type is aiohttp.WSMsgType.TEXT:  # pongs to bob's last pings
                assert json.loads(closing.data)["event"] == "pusher:pong"
                closing = await bob.ws.receive(timeout=5)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1001
            assert await member_ids(server, channel) == {"alice"}
        await alice.close()


@contextlib.asynccontextmanager
async def pinging(socket: PusherSocket, every: float = 0.25) -> AsyncIterator[None]:
    """``socket`` sends ``pusher:ping`` every ``every`` seconds while the block runs."""

    async def keep_alive() -> None:
        while True:
            await socket.send("pusher:ping", {})
            await asyncio.sleep(every)

    pinger = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger


# -- exactly once under concurrency -----------------------------------------------------------------------


async def test_concurrent_joins_leaves_and_disconnects_leave_the_right_members_and_one_webhook_each(
    start_server: StartServer, receiver: Receiver
) -> None:
    server = start_server(hooked(receiver), args=("--lambda-concurrency", "12"))
    channel = "presence-crowd"
    async with aiohttp.ClientSession() as http:

        async def join(user: str) -> PusherSocket:
            socket = await PusherSocket.connect(http, server.ws_url, APP_A)
            await socket.send("pusher:subscribe", socket.subscribe_frame(channel, user, {"name": user}))
            return socket

        # u0..u3 with three sockets each, all subscribing at once.
        users = [f"u{i}" for i in range(4)]
        sockets = await asyncio.gather(*(join(u) for u in users for _ in range(3)))
        by_user = {u: [s for i, s in enumerate(sockets) if users[i // 3] == u] for u in users}
        await receiver.wait_events(4, name="member_added", timeout=30)
        assert await member_ids(server, channel) == set(users)

        # At once: u0 unsubscribes everywhere, u1 disconnects everywhere, u2 keeps one socket of three,
        # u3 stays, u4 joins twice.
        moves: list[Any] = [s.send("pusher:unsubscribe", {"channel": channel}) for s in by_user["u0"]]
        moves += [s.close() for s in by_user["u1"]]
        moves += [by_user["u2"][0].close(), by_user["u2"][1].send("pusher:unsubscribe", {"channel": channel})]
        moves += [join("u4"), join("u4")]
        newcomers = [s for s in await asyncio.gather(*moves) if isinstance(s, PusherSocket)]
        sockets.extend(newcomers)

        await receiver.wait_events(2, name="member_removed", timeout=30)
        await receiver.wait_events(5, name="member_added", timeout=30)
        await asyncio.sleep(DELAY + 2)  # anything extra would be here by now
        assert await member_ids(server, channel) == {"u2", "u3", "u4"}
        added = sorted(e["user_id"] for e in receiver.events(name="member_added"))
        removed = sorted(e["user_id"] for e in receiver.events(name="member_removed"))
        assert added == ["u0", "u1", "u2", "u3", "u4"]
        assert removed == ["u0", "u1"]
        assert len(receiver.events(name="channel_occupied")) == 1 and receiver.events(name="channel_vacated") == []
        assert all(python_sdk_validates(APP_A, r) is not None for r in receiver.at())
        for socket in sockets:
            await socket.close()


async def test_a_reconnect_within_the_delay_sends_neither_departure_nor_arrival_in_whatever_order(
    start_server: StartServer, receiver: Receiver
) -> None:
    # The local suite's page-reload test, with webhook order left free: on AWS each event is its own
    # SQS message and a standard queue keeps no order.
    server = start_server(hooked(receiver))
    async with aiohttp.ClientSession() as http:
        first = await PusherSocket.connect(http, server.ws_url, APP_A)
        await first.subscribe("presence-lobby", "u1")
        await receiver.wait_events(1, name="member_added", timeout=15)
        await first.close()
        await asyncio.sleep(0.2)
        second = await PusherSocket.connect(http, server.ws_url, APP_A)
        await second.subscribe("presence-lobby", "u1")
        await asyncio.sleep(DELAY + 2.5)  # past the first socket's delayed departures and SQS's rounding
        assert sorted(e["name"] for e in receiver.events()) == ["channel_occupied", "member_added"]
        await second.close()
        await receiver.wait_events(1, name="channel_vacated", timeout=15)
        await receiver.wait_events(1, name="member_removed", timeout=15)
        assert sorted(e["name"] for e in receiver.events()) == [
            "channel_occupied",
            "channel_vacated",
            "member_added",
            "member_removed",
        ]


async def test_client_event_webhooks_carry_data_socket_id_and_presence_user_id_in_either_order(
    start_server: StartServer, receiver: Receiver
) -> None:
    # The local suite's client_event test; two frames are two concurrent invocations here, so the two
    # webhooks may come in either order.
    server = start_server(hooked(receiver))
    async with aiohttp.ClientSession() as http:
        client = await PusherSocket.connect(http, server.ws_url, APP_A)
        await client.subscribe("private-chat")
        await client.subscribe("presence-chat", "u7", None)
        await client.send("client-typing", {"text": "hé"}, channel="private-chat")
        await client.send("client-typing", "raw string", channel="presence-chat")
        await receiver.wait_events(2, name="client_event", timeout=15)
        by_channel = {e["channel"]: e for e in receiver.events(name="client_event")}
        assert by_channel == {
            "private-chat": {
                "name": "client_event",
                "channel": "private-chat",
                "event": "client-typing",
                "data": '{"text":"hé"}',
                "socket_id": client.socket_id,
            },
            "presence-chat": {
                "name": "client_event",
                "channel": "presence-chat",
                "event": "client-typing",
                "data": "raw string",
                "socket_id": client.socket_id,
                "user_id": "u7",
            },
        }
        assert all(python_sdk_validates(APP_A, r) is not None for r in receiver.at())
        await client.close()


async def test_a_lambda_webhook_target_is_invoked_with_the_pusher_body(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Sockudo's Lambda target, from the webhooks function: an asynchronous Invoke with {time_ms, events}.
    log = tmp_path / "hooks.jsonl"
    app = {**APP_A, "webhooks": [{"lambda": {"function_name": "customer-hook", "region": "us-east-1"}}]}
    server = start_server(
        {"apps": [app]},
        args=("--lambda-function", "customer-hook=tests.emulator.echo_functions.customer_hook"),
        env={"ECHO_LOG": str(log)},
    )
    async with aiohttp.ClientSession() as http:
        socket = await PusherSocket.connect(http, server.ws_url, APP_A)
        await socket.subscribe("lambda-hooked")

        def bodies() -> list[dict[str, Any]]:
            return [json.loads(line)["event"] for line in log.read_text().splitlines()] if log.exists() else []

        deadline = asyncio.get_running_loop().time() + 15
        while not any(e["name"] == "channel_occupied" for b in bodies() for e in b["events"]):
            assert asyncio.get_running_loop().time() < deadline, f"no channel_occupied invocation: {bodies()}"
            await asyncio.sleep(0.1)
        occupied = [e for b in bodies() for e in b["events"] if e["name"] == "channel_occupied"]
        assert occupied == [{"name": "channel_occupied", "channel": "lambda-hooked"}]
        assert all(abs(b["time_ms"] / 1000 - time.time()) < 30 for b in bodies())
        await socket.close()


# -- stale connections ------------------------------------------------------------------------------------


async def test_a_post_answered_410_removes_a_member_whose_disconnect_was_lost(
    start_server: StartServer, receiver: Receiver
) -> None:
    server = start_server(hooked(receiver))
    channel = "presence-ghosts"
    async with aiohttp.ClientSession() as http:
        alice = await PusherSocket.connect(http, server.ws_url, APP_A)
        await alice.subscribe(channel, "alice")
        bob = await PusherSocket.connect(http, server.ws_url, APP_A)
        await bob.subscribe(channel, "bob")
        await alice.expect("pusher_internal:member_added", channel)
        await bob.ws.close(code=LOSE_DISCONNECT)  # gone, and API Gateway never sends $disconnect
        await asyncio.sleep(1.0)
        assert await member_ids(server, channel) == {"alice", "bob"}  # a ghost, until something is posted

        await asyncio.to_thread(sdk(server).trigger, channel, "news", {"n": 1})
        assert json.loads((await alice.expect("news", channel))["data"]) == {"n": 1}
        removed = await alice.expect("pusher_internal:member_removed", channel)
        assert json.loads(removed["data"]) == {"user_id": "bob"}
        assert await member_ids(server, channel) == {"alice"}
        await receiver.wait_events(1, name="member_removed", timeout=15)
        assert [e["user_id"] for e in receiver.events(name="member_removed")] == ["bob"]
        await alice.close()


async def test_the_sweep_removes_a_silent_connection_api_gateway_no_longer_has_and_keeps_live_ones(
    start_server: StartServer, receiver: Receiver
) -> None:
    # One-second buckets, and a 60 s connection cap so the first sweep looks back only 60 buckets.
    config = hooked(receiver, aws={"stale_after_seconds": 1, "max_connection_seconds": 60})
    server = start_server(config, args=("--sweep-interval", "1"))
    channel = "presence-sweep"
    async with aiohttp.ClientSession() as http:
        alice = await PusherSocket.connect(http, server.ws_url, APP_A)
        await alice.subscribe(channel, "alice")
        bob = await PusherSocket.connect(http, server.ws_url, APP_A)
        await bob.subscribe(channel, "bob")
        await alice.expect("pusher_internal:member_added", channel)
        lost_at = time.monotonic()
        await bob.ws.close(code=LOSE_DISCONNECT)

        # Nothing is posted to bob: only the sweep can find out.
        # bob was lost in his first seconds: the sweep leaves entries younger than a connect can run (15 s)
        # for the next cycle, so the bound here is 15 s + the 1 s cycle + the 1 s schedule period.
        removed = await alice.expect("pusher_internal:member_removed", channel, timeout=40)
        assert json.loads(removed["data"]) == {"user_id": "bob"}
        assert time.monotonic() - lost_at < 30
        await asyncio.sleep(3)  # more sweeps: alice is silent too, but API Gateway still has her
        assert await member_ids(server, channel) == {"alice"}
        await receiver.wait_events(1, name="member_removed", timeout=15)
        await alice.close()
