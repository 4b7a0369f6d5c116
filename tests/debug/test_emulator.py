"""The same console on the emulator (``--emulate-lambda``): the engines of the Lambda "containers" report to
it, every invocation shows with its handler and duration, the Event Creator goes through the ``http_api``
function and the channel list comes from the DynamoDB table (moto)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP
from tests.debug.browser import Browser, browser_missing
from tests.debug.sse import Stream, channel
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess

EMULATE = ("--emulate-lambda", "--sweep-interval", "0")


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [DEFAULT_APP], "debug_console": True}, args=EMULATE).start(timeout=60)
    yield proc
    proc.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = browser_missing()
    if reason is not None:
        pytest.skip(f"browser tests: {reason}")
    page = await Browser.start()
    try:
        yield page
    finally:
        await page.close()


async def test_the_emulator_console_shows_lambda_invocations_and_the_engine_events(
    emulator: ServerProcess, http: aiohttp.ClientSession, js: NodeDriver, app: App
) -> None:
    async with http.get(emulator.url + "/debug/session") as response:
        assert (await response.json())["lambda"] is True
    stream = await Stream.open(http, emulator.url)
    try:
        client = await js.client("lambda-client", app, emulator.port)
        socket_id = await client.socket_id()
        connect = await stream.event("lambda", function="sockless-ConnectFunction", timeout=10)
        assert connect["duration_ms"] > 0
        assert "error" not in connect
        await stream.event("connection", socket_id=socket_id, timeout=10)

        await client.subscribe("emulated", "hello")
        await stream.event("lambda", function="sockless-MessageFunction", timeout=10)
        await stream.event("subscribed", socket_id=socket_id, channel="emulated", timeout=10)
        await stream.state(lambda s: (channel(s, "emulated") or {}).get("subscription_count") == 1, timeout=10)

        url = f"{emulator.url}/debug/apps/100001/events"
        async with http.post(url, json={"channel": "emulated", "name": "hello", "data": '{"via":"lambda"}'}) as r:
            assert r.status == 200, await r.text()
        assert (await client.expect("hello", "emulated", timeout=10))["data"] == {"via": "lambda"}
        await stream.event("lambda", function="sockless-HttpApiFunction", timeout=10)
        await stream.event("api_message", event="hello", timeout=10)
        async with http.post(url, json={"channel": "emulated", "name": "", "data": "x"}) as r:
            assert r.status == 400  # the http_api function's own validation

        await client.disconnect()
        await stream.event("lambda", function="sockless-DisconnectFunction", timeout=10)
        await stream.event("disconnection", socket_id=socket_id, timeout=10)
    finally:
        stream.close()
    assert DEFAULT_APP["secret"] not in stream.raw


async def test_the_emulator_page_lists_lambda_rows(
    emulator: ServerProcess, browser: Browser, js: NodeDriver, app: App
) -> None:
    await browser.open(f"{emulator.url}/debug")
    await browser.wait("#status", "live")
    await browser.wait("#kind-lambda")
    client = await js.client("lambda-page", app, emulator.port)
    await client.subscribe("emulated-page")
    await browser.wait('#log tbody tr[data-type="lambda"]', "sockless-ConnectFunction", timeout=10)
    await browser.wait('#log tbody tr[data-type="lambda"]', "ms", timeout=10)
    await browser.wait('#channels tr[data-channel="emulated-page"] td.count', "1", timeout=10)
    assert not browser.page_errors(), browser.page_log()


async def test_the_emulator_console_shows_the_running_cost_per_month(
    emulator: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """``GET /debug/cost``: the emulator's meter at list prices, scaled to a month; pings on the MOCK route
    are billed messages, and an open connection its connection-minutes."""

    async def cost() -> dict[str, Any]:
        async with http.get(emulator.url + "/debug/cost") as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async with http.get(emulator.url + "/debug/session") as response:
        assert (await response.json())["cost"] is True
    key = DEFAULT_APP["key"]
    async with http.ws_connect(f"{emulator.ws_url}/app/{key}?protocol=7&client=test") as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["event"] == "pusher:connection_established"
        for _ in range(5):
            await ws.send_json({"event": "pusher:ping", "data": {}})
            assert json.loads((await ws.receive(timeout=10)).data)["event"] == "pusher:pong"
        during = await cost()
    assert during["open_connections"] >= 1
    assert during["lines"]["ws_connection_minute"] >= 43_200 * 0.25e-6  # a connection for a month
    assert during["lines"]["ws_message"] > 0
    assert during["lines"]["lambda_request"] > 0  # $connect and the welcome
    assert during["usd_per_month"] == pytest.approx(sum(during["lines"].values()), abs=0.02)
