"""Connection lifecycle with real pusher-js: handshake, refusals that stop the client, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP
from tests.e2e.jsdriver import SOCKET_ID, App, JsClient, NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

DISABLED = App("disabled-id", "disabled-key", "disabled-secret")
SINGLE = App("single-id", "single-key", "single-secret")
GUARDED = App("guarded-id", "guarded-key", "guarded-secret")
GOOD_ORIGIN = "https://good.example"
# pusher-js retries a closed connection after 1 s; watching a little longer proves it does not.
NO_RETRY_WINDOW = 1.5


@pytest.fixture(scope="module")
def gatekeeper() -> Iterator[ServerProcess]:
    """A server whose apps refuse connections: disabled, one connection at most, one allowed origin."""
    apps: list[dict[str, Any]] = [
        DEFAULT_APP,
        {"id": DISABLED.id, "key": DISABLED.key, "secret": DISABLED.secret, "enabled": False},
        {"id": SINGLE.id, "key": SINGLE.key, "secret": SINGLE.secret, "max_connections": 1},
        {"id": GUARDED.id, "key": GUARDED.key, "secret": GUARDED.secret, "allowed_origins": [GOOD_ORIGIN]},
    ]
    proc = ServerProcess({"apps": apps}).start()
    yield proc
    proc.cleanup()


async def test_pusher_js_connects_and_gets_a_numeric_socket_id(js: NodeDriver, server: ServerProcess, app: App) -> None:
    client = await js.client("a", app, server.port)

    state = await client.info()
    assert state["state"] == "connected"
    assert SOCKET_ID.match(state["socket_id"])


async def _assert_refused_and_stopped(client: JsClient, code: int) -> None:
    await client.expect_error(code)
    await client.expect_state("disconnected")
    await asyncio.sleep(NO_RETRY_WINDOW)
    states = client.states()
    assert "connected" not in states
    assert states[-1] == "disconnected", f"pusher-js kept retrying: {states}"
    assert states.count("connecting") <= 1, f"pusher-js reconnected after {code}: {states}"


@pytest.mark.parametrize(
    ("app_under_test", "code"),
    [
        pytest.param(App("nope", "no-such-key", "x"), 4001, id="unknown-key-4001"),
        pytest.param(DISABLED, 4003, id="disabled-app-4003"),
    ],
)
async def test_refused_app_stops_pusher_js_without_a_reconnect_loop(
    js: NodeDriver, gatekeeper: ServerProcess, app_under_test: App, code: int
) -> None:
    refused = await js.client("refused", app_under_test, gatekeeper.port, connected=False)
    await _assert_refused_and_stopped(refused, code)


async def test_app_over_its_connection_quota_refuses_the_next_client_with_4004(
    js: NodeDriver, gatekeeper: ServerProcess
) -> None:
    first = await js.client("first", SINGLE, gatekeeper.port)
    second = await js.client("second", SINGLE, gatekeeper.port, connected=False)
    await _assert_refused_and_stopped(second, 4004)
    assert (await first.info())["state"] == "connected"

    await first.disconnect()
    # The slot is free again once the first client has gone.
    await js.client("third", SINGLE, gatekeeper.port)


async def test_disallowed_origin_is_refused_with_4009_and_an_allowed_one_connects(
    js: NodeDriver, gatekeeper: ServerProcess
) -> None:
    evil = await js.client("evil", GUARDED, gatekeeper.port, connected=False, origin="https://evil.example")
    await _assert_refused_and_stopped(evil, 4009)

    await js.client("good", GUARDED, gatekeeper.port, origin=GOOD_ORIGIN)


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        pytest.param("/app/no-such-key?protocol=7", {}, 4001, id="unknown-key"),
        pytest.param(f"/app/{DISABLED.key}?protocol=7", {}, 4003, id="disabled"),
        pytest.param(f"/app/{GUARDED.key}?protocol=7", {"Origin": "https://evil.example"}, 4009, id="bad-origin"),
        pytest.param(f"/app/{GUARDED.key}?protocol=7", {}, 4009, id="no-origin"),
        pytest.param("/app/app-key", {}, 4008, id="no-protocol"),
        pytest.param("/app/app-key?protocol=3", {}, 4007, id="old-protocol"),
        pytest.param("/nowhere?protocol=7", {}, 4005, id="bad-path"),
    ],
)
async def test_refusal_is_an_error_frame_then_the_same_close_code(
    gatekeeper: ServerProcess, path: str, headers: dict[str, str], code: int
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(gatekeeper.ws_url + path, headers=headers) as ws:
        first = await ws.receive_json(timeout=5)
        assert first["event"] == "pusher:error"
        assert first["data"]["code"] == code
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == code


async def _raw_client(
    http: aiohttp.ClientSession, server: ServerProcess, *, answer_pings: bool, watch_for: float
) -> tuple[int | None, list[str]]:
    """A bare WebSocket client; returns (close code or None if still open after ``watch_for`` s, events seen)."""
    seen: list[str] = []
    async with http.ws_connect(f"{server.ws_url}/app/app-key?protocol=7&client=raw&version=0") as ws:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + watch_for
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return ws.close_code, seen
            event = msg.json()["event"]
            seen.append(event)
            if event == "pusher:ping" and answer_pings:
                await ws.send_json({"event": "pusher:pong", "data": {}})
        return None, seen


async def test_silent_client_is_closed_with_4201_and_an_answering_one_stays(
    js: NodeDriver, start_server: Callable[..., ServerProcess], app: App
) -> None:
    server = start_server({"apps": [DEFAULT_APP], "activity_timeout": 1, "pong_timeout": 1})
    pusher_js = await js.client("heartbeat", app, server.port)
    async with aiohttp.ClientSession() as http:
        started = asyncio.get_running_loop().time()
        (silent_code, silent_seen), (answering_code, answering_seen) = await asyncio.gather(
            _raw_client(http, server, answer_pings=False, watch_for=6),
            _raw_client(http, server, answer_pings=True, watch_for=4),
        )
        elapsed = asyncio.get_running_loop().time() - started

    assert silent_code == 4201
    assert silent_seen == ["pusher:connection_established", "pusher:ping"]
    assert answering_code is None
    assert answering_seen.count("pusher:ping") >= 2
    assert elapsed < 5.5
    # pusher-js takes the server's 1 s activity_timeout, pings and answers pings: it is never dropped.
    assert pusher_js.states() == ["connected"]
    assert (await pusher_js.info())["state"] == "connected"


async def test_sigterm_closes_pusher_js_with_4200_and_the_server_exits_cleanly(
    js: NodeDriver, start_server: Callable[..., ServerProcess], app: App
) -> None:
    server = start_server({"apps": [DEFAULT_APP]})
    client = await js.client("a", app, server.port)
    await client.subscribe("news")

    returncode = await asyncio.to_thread(server.stop)

    await client.expect_error(4200)
    # 4200 means "reconnect now": pusher-js goes looking for a server instead of giving up.
    await client.expect_state("connecting")
    assert returncode == 0
    assert "Traceback" not in server.output()


async def test_pusher_js_resubscribes_to_a_restarted_server_after_4200(
    js: NodeDriver, start_server: Callable[..., ServerProcess], app: App
) -> None:
    first = start_server({"apps": [DEFAULT_APP]})
    client = await js.client("a", app, first.port)
    await client.subscribe("private-survivor", "still-here")
    assert await asyncio.to_thread(first.stop) == 0
    await client.expect_error(4200)

    second = start_server({"apps": [DEFAULT_APP], "port": first.port})
    # pusher-js retried at once and hit the closed port; under Node that attempt only ends with its 15 s
    # transport timeout, after which it connects to the new server and re-authorizes its channels.
    await client.expect_state("connected", timeout=25)
    await client.expect("pusher:subscription_succeeded", "private-survivor")
    reply = await js.sdk_trigger(app, second.port, "private-survivor", "still-here", {"ok": True})

    assert reply["status"] == 200
    assert (await client.expect("still-here", "private-survivor"))["data"] == {"ok": True}
