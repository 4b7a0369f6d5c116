"""Prometheus metrics and health endpoints of the local server, after real pusher-js traffic."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DEFAULT_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

COUNTERS = (
    "sockless_new_connections_total",
    "sockless_ws_messages_sent_total",
    "sockless_ws_messages_received_total",
    "sockless_http_calls_total",
)


async def scrape(server: ServerProcess, app_id: str) -> dict[str, float]:
    """Every sample labelled with ``app_id``, by sample name."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("app_id") == app_id
    }


async def test_metrics_count_connections_and_messages_per_app(js: NodeDriver, server: ServerProcess, app: App) -> None:
    before = await scrape(server, app.id)

    client = await js.client("a", app, server.port)
    await client.subscribe("metered", "tick")
    for n in range(3):
        reply = await js.sdk_trigger(app, server.port, "metered", "tick", {"n": n})
        assert reply["status"] == 200
        await client.expect("tick", "metered")

    after = await scrape(server, app.id)
    assert set(COUNTERS) <= set(after), sorted(after)
    assert after["sockless_new_connections_total"] >= before.get("sockless_new_connections_total", 0) + 1
    assert after["sockless_ws_messages_sent_total"] >= before.get("sockless_ws_messages_sent_total", 0) + 3
    assert after["sockless_ws_messages_received_total"] >= before.get("sockless_ws_messages_received_total", 0) + 1
    assert after["sockless_http_calls_total"] >= before.get("sockless_http_calls_total", 0) + 3
    assert after["sockless_connected"] >= 1


async def test_ws_message_metrics_count_every_frame_both_ways(
    js: NodeDriver, start_server: Callable[..., ServerProcess], app: App
) -> None:
    """Direct replies (welcome, subscription_succeeded, pong) are frames sent too, not just broadcasts: these
    counters are what API Gateway bills per message."""
    server = start_server({"apps": [DEFAULT_APP]})
    before = await scrape(server, app.id)
    received: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.ws_url}/app/{app.key}?protocol=7") as ws:
        received.append(await ws.receive_str(timeout=5))
        await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "billed"}})
        received += [await ws.receive_str(timeout=5), await ws.receive_str(timeout=5)]
        assert (await js.sdk_trigger(app, server.port, "billed", "tick", {"n": 1}))["status"] == 200
        received.append(await ws.receive_str(timeout=5))
        await ws.send_json({"event": "pusher:ping", "data": {}})
        received.append(await ws.receive_str(timeout=5))
    after = await scrape(server, app.id)

    events = [frame.split('"event":"', 1)[1].split('"', 1)[0] for frame in received]
    assert events == [
        "pusher:connection_established",
        "pusher_internal:subscription_succeeded",
        "pusher_internal:subscription_count",
        "tick",
        "pusher:pong",
    ]
    sent = after["sockless_ws_messages_sent_total"] - before.get("sockless_ws_messages_sent_total", 0)
    assert sent == len(received)
    sent_bytes = after["sockless_ws_bytes_sent_total"] - before.get("sockless_ws_bytes_sent_total", 0)
    assert sent_bytes == sum(len(frame.encode()) for frame in received)
    assert after["sockless_ws_messages_received_total"] - before.get("sockless_ws_messages_received_total", 0) == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/up", 200, id="server"),
        pytest.param("/up/100001", 200, id="known-app"),
        pytest.param("/up/12345", 200, id="numeric-app"),
        pytest.param("/up/unknown", 404, id="unknown-app"),
    ],
)
async def test_health_endpoints(server: ServerProcess, path: str, status: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        assert response.status == status
