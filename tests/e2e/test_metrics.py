"""Prometheus metrics and health endpoints of the local server, after real pusher-js traffic."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

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


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/up", 200, id="server"),
        pytest.param("/up/app-id", 200, id="known-app"),
        pytest.param("/up/12345", 200, id="numeric-app"),
        pytest.param("/up/unknown", 404, id="unknown-app"),
    ],
)
async def test_health_endpoints(server: ServerProcess, path: str, status: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        assert response.status == status
