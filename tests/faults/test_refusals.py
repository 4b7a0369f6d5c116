"""#18.2 and #19.6: every refusal is one structured line (rate-limited per kind), a metric by code, and REST
failures show in the debug console; nothing a client or a failing receiver does floods the log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp

from tests.conftest import DEFAULT_APP
from tests.debug.sse import Stream
from tests.serverproc import ServerProcess
from tests.support import APP_ID, log_lines, metric, signed_params
from tests.webhooks.support import Receiver

REFUSALS = "sockless_refusals_total"


async def test_bad_rest_signatures_are_one_line_per_interval_and_counted_each(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    path = f"/apps/{APP_ID}/events"
    body = b'{"name":"e","channel":"c","data":"{}"}'
    before = await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="401")
    signatures = []
    for _ in range(30):
        params = signed_params("POST", path, body, secret="not-the-secret")
        signatures.append(params["auth_signature"])
        async with http.post(console.url + path, params=params, data=body) as response:
            assert response.status == 401
    assert await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="401") == before + 30
    lines = log_lines(console, f"refused kind=rest app={APP_ID} client=127.0.0.1 code=401")
    assert len(lines) == 1, console.output()
    assert f"reason=POST /apps/{APP_ID}/events: Invalid signature" in lines[0]
    output = console.output()
    assert not any(signature in output for signature in signatures)


async def test_an_unknown_app_is_counted_without_its_id(console: ServerProcess, http: aiohttp.ClientSession) -> None:
    before = await metric(console, REFUSALS, app_id="-", kind="rest", code="404")
    for n in range(5):
        async with http.get(f"{console.url}/apps/no-such-app-{n}/channels") as response:
            assert response.status == 404
    # Ids a client makes up never become metric labels (an attacker could grow them without bound).
    assert await metric(console, REFUSALS, app_id="-", kind="rest", code="404") == before + 5
    assert await metric(console, REFUSALS, app_id="no-such-app-0") == 0


async def test_websocket_refusals_name_the_socket_or_the_address(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{console.ws_url}/app/no-such-key?protocol=7") as ws:
        error = await ws.receive_json(timeout=5)
        assert error["event"] == "pusher:error"
        assert error["data"]["code"] == 4001  # pusher:error carries an object, not a JSON string
    assert await metric(console, REFUSALS, app_id="-", kind="websocket", code="4001") >= 1
    assert log_lines(console, "refused kind=websocket app=- client=127.0.0.1 code=4001")

    async with http.ws_connect(f"{console.ws_url}/app/app-key?protocol=7") as ws:
        welcome = await ws.receive_json(timeout=5)
        socket_id = json.loads(welcome["data"])["socket_id"]
        await ws.send_json(
            {"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": "app-key:" + "0" * 64}}
        )
        while (await ws.receive_json(timeout=5))["event"] != "pusher:error":
            pass
    line = log_lines(console, f"refused kind=frame app={APP_ID} socket={socket_id} channel=private-x")
    assert line and "0" * 64 not in line[0]
    assert await metric(console, REFUSALS, app_id=APP_ID, kind="frame") >= 1


async def test_rest_failures_show_in_the_apps_debug_console(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    stream = await Stream.open(http, console.url)
    try:
        assert (await stream.next())["type"] == "hello"
        path = f"/apps/{APP_ID}/channels"
        params = signed_params("GET", path, b"", secret="wrong-secret")
        async with http.get(console.url + path, params=params) as response:
            assert response.status == 401
        row = await stream.event("rest_error", status=401)
        assert (row["method"], row["path"], row["client"]) == ("GET", path, "127.0.0.1")
        assert row["message"] == "Invalid signature"
        assert params["auth_signature"] not in stream.raw
    finally:
        stream.close()


async def test_a_failing_webhook_receiver_costs_one_line_per_interval(start_server: object) -> None:
    receiver = await Receiver().start()
    try:
        app = {**DEFAULT_APP, "webhooks": [{"url": receiver.url(), "event_types": ["channel_occupied"]}]}
        receiver.scripts["/hook"] = [500] * 1000
        assert callable(start_server)
        server: ServerProcess = start_server(
            {
                "apps": [app],
                "webhooks": {
                    "delay_seconds": 0,
                    "retry_initial_backoff_seconds": 0.01,
                    "retry_max_backoff_seconds": 0.02,
                },
            }
        )
        async with aiohttp.ClientSession() as http:
            sockets = []
            for n in range(10):  # kept open: an occupied channel's webhook stays due, so it is retried
                ws = await http.ws_connect(f"{server.ws_url}/app/app-key?protocol=7")
                sockets.append(ws)
                await ws.receive_json(timeout=5)
                await ws.send_json({"event": "pusher:subscribe", "data": {"channel": f"room-{n}"}})
                await ws.receive_json(timeout=5)
            await receiver.wait_for(lambda: len(receiver.requests) >= 60, timeout=20)
            for ws in sockets:
                await ws.close()
    finally:
        await receiver.stop()
    failed = await metric(server, "sockless_webhooks_failed_total", app_id=APP_ID)
    assert failed >= 60
    assert len(log_lines(server, "webhook to")) <= 3, server.output()
    assert "Traceback" not in server.output()


async def test_every_line_stays_one_line(console: ServerProcess, http: aiohttp.ClientSession) -> None:
    """A client cannot forge log lines: control characters in what it sends are masked."""
    async with http.get(console.url + f"/apps/{APP_ID}/channels%0Afake%20line") as response:
        assert response.status in (401, 404)
    await asyncio.sleep(0)
    assert not any(line.startswith("fake line") for line in console.output().splitlines())


async def test_a_body_too_large_is_logged_counted_and_shown_in_the_console(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """413 comes from the edge when Content-Length is over the limit (the body is never read) and from the
    router when a chunked body outgrows it: both are refusals like any other."""
    path = f"/apps/{APP_ID}/events"
    too_large = b"x" * (1024 * 1024 + 1)  # max_http_body_kb's default

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(too_large), 65536):
            yield too_large[start : start + 65536]

    stream = await Stream.open(http, console.url)
    try:
        assert (await stream.next())["type"] == "hello"
        before = await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="413")
        for body in (too_large, chunked()):
            async with http.post(console.url + path, data=body) as response:
                assert response.status == 413
            row = await stream.event("rest_error", status=413)
            assert (row["method"], row["path"], row["client"]) == ("POST", path, "127.0.0.1")
        assert await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="413") == before + 2
        [line] = log_lines(console, f"refused kind=rest app={APP_ID} client=127.0.0.1 code=413")
        assert f"reason=POST {path}: Request body too large" in line
    finally:
        stream.close()


async def test_a_body_that_does_not_decode_is_a_refusal(console: ServerProcess, http: aiohttp.ClientSession) -> None:
    path = f"/apps/{APP_ID}/events"
    before = await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="400")
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with http.post(console.url + path, data=b"not gzip at all", headers=headers) as response:
        assert response.status == 400
    assert await metric(console, REFUSALS, app_id=APP_ID, kind="rest", code="400") == before + 1
    assert log_lines(console, f"refused kind=rest app={APP_ID} client=127.0.0.1 code=400")
