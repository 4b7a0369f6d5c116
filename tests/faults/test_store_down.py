"""#19.5 and #19.6 with the store down: refusals the clients understand, never a 500 or a traceback, and a
health check that logs once per interval however often it is called."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP
from tests.redis.conftest import RedisServer
from tests.serverproc import ServerProcess
from tests.support import APP_ID, log_lines, metric, signed_params

pytestmark = pytest.mark.redis


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    proc = RedisServer(tmp_path).start()
    yield proc
    proc.kill()


@pytest.fixture
def node(redis: RedisServer) -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [DEFAULT_APP], "store": {"driver": "redis", "url": redis.url}}).start()
    yield proc
    proc.cleanup()


async def test_with_the_store_killed_clients_are_refused_the_protocols_way(
    redis: RedisServer, node: ServerProcess
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{node.ws_url}/app/app-key?protocol=7") as ws:  # the store is up
            assert (await ws.receive_json(timeout=5))["event"] == "pusher:connection_established"
            redis.kill()
            await ws.close()

        # A new connection: pusher:error 4100 (pusher-js backs off, then reconnects), then the close.
        async with http.ws_connect(f"{node.ws_url}/app/app-key?protocol=7") as ws:
            error = await ws.receive_json(timeout=10)
            assert (error["event"], error["data"]["code"]) == ("pusher:error", 4100)
            await ws.receive(timeout=5)
            assert ws.close_code == 4100

        # A REST read: 503 with Retry-After (publishes: test_bus_outage.py).
        path = f"/apps/{APP_ID}/channels"
        async with http.get(node.url + path, params=signed_params("GET", path, b"")) as response:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"]

        # A load balancer polling /up: 503 each time, one log line.
        for _ in range(20):
            async with http.get(node.url + "/up") as response:
                assert response.status == 503
    assert len(log_lines(node, "redis health check failed")) == 1
    assert await metric(node, "sockless_refusals_total", kind="websocket", code="4100") == 1
    output = node.output()
    assert "Traceback" not in output
    assert "Error handling request" not in output
    # The cluster's own line about losing its bus (rate-limited: once per 10 s) is the only ERROR.
    assert all("cluster" in line for line in log_lines(node, '"level":"ERROR"')), output


async def test_connections_work_again_once_the_store_is_back(redis: RedisServer, node: ServerProcess) -> None:
    redis.kill()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{node.ws_url}/app/app-key?protocol=7") as ws:
            assert (await ws.receive_json(timeout=10))["data"]["code"] == 4100
        redis.start()  # the same port, empty
        async with http.ws_connect(f"{node.ws_url}/app/app-key?protocol=7") as ws:
            assert (await ws.receive_json(timeout=10))["event"] == "pusher:connection_established"


async def test_a_webhook_queue_on_a_killed_redis_costs_one_warning_per_interval_and_no_traceback(
    redis: RedisServer,
) -> None:
    """The dispatcher polls its queue every second; an outage is not a bug: no traceback per poll."""
    store = {"driver": "redis", "url": redis.url}
    node = ServerProcess({"apps": [DEFAULT_APP], "store": store, "queue": {"driver": "redis"}}).start()
    try:
        redis.kill()
        await asyncio.sleep(3.5)  # three or four failed polls, one second apart
        assert len(log_lines(node, "webhook queue unavailable")) == 1, node.output()
        assert "Traceback" not in node.output()
    finally:
        node.cleanup()
