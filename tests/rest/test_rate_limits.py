"""Rate limits on the REST API: per app (writes and reads counted apart) and per client IP, answered with 429,
a JSON error and ``Retry-After``; a refused request publishes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from tests.conftest import NUMERIC_APP
from tests.rest.clients import Creds, rest, signed_url
from tests.rest.conftest import Connect
from tests.serverproc import ServerProcess

APP = Creds.of(NUMERIC_APP)
EVENTS = f"/apps/{APP.id}/events"
CHANNELS = f"/apps/{APP.id}/channels"


async def _burst(
    http: aiohttp.ClientSession, url: Callable[[], str], n: int, body: bytes = b""
) -> list[tuple[int, dict[str, str], object]]:
    async def one() -> tuple[int, dict[str, str], object]:
        method = "POST" if body else "GET"
        async with http.request(method, url(), data=body) as resp:
            return resp.status, dict(resp.headers), await resp.json(content_type=None)

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_app_write_and_read_limits_are_counted_apart_and_answer_429(
    start_server: Callable[..., ServerProcess], http: aiohttp.ClientSession, connect: Connect
) -> None:
    app = {**NUMERIC_APP, "max_backend_events_per_second": 2, "max_read_requests_per_second": 3}
    server = start_server({"apps": [app]})
    subscriber = await connect(server, APP)
    await subscriber.subscribe("limited")
    body = b'{"name":"burst","data":"x","channel":"limited"}'

    started = time.monotonic()
    writes = await _burst(http, lambda: signed_url(server.url, "POST", EVENTS, APP, body=body), 6, body)
    reads = await _burst(http, lambda: signed_url(server.url, "GET", CHANNELS, APP), 6)
    elapsed = time.monotonic() - started

    refused = [r for r in writes + reads if r[0] == 429]
    assert {status for status, _, _ in writes + reads} == {200, 429}
    for _, headers, error in refused:
        assert headers["Retry-After"] == "1"
        assert isinstance(error, dict) and list(error) == ["error"] and "rate limit" in error["error"]
    published = sum(status == 200 for status, _, _ in writes)
    if elapsed < 1:  # all in one window (a slow machine may straddle two: then only the above holds)
        assert published == 2
        assert sum(status == 200 for status, _, _ in reads) == 3

    # Exactly the accepted writes were published; the refused ones left no trace before the sentinel.
    await asyncio.sleep(1.05)
    status, _ = await rest(
        http, server.url, "POST", EVENTS, APP, body={"name": "sentinel", "data": "x", "channel": "limited"}
    )
    assert status == 200
    events = [(await subscriber.next_event())["event"] for _ in range(published + 1)]
    assert events == ["burst"] * published + ["sentinel"]


async def test_per_ip_limit_covers_every_request_to_the_api_whatever_the_app(
    start_server: Callable[..., ServerProcess], http: aiohttp.ClientSession, connect: Connect
) -> None:
    other = {"id": "777", "key": "other-key", "secret": "other-secret"}
    server = start_server(
        {"apps": [NUMERIC_APP, other], "rate_limits": {"http_per_ip": {"max_requests": 3, "window_seconds": 2}}}
    )
    subscriber = await connect(server, APP)  # WebSocket connections are not REST requests: not counted
    await subscriber.subscribe("ip-limited")

    statuses = []
    started = time.monotonic()
    for url in (
        f"{server.url}/apps/{APP.id}/nowhere",  # a 404 counts
        f"{server.url}{CHANNELS}",  # an unsigned request counts
        signed_url(server.url, "GET", CHANNELS, APP),
        signed_url(server.url, "GET", "/apps/777/channels", Creds.of(other)),
    ):
        async with http.get(url) as resp:
            statuses.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    body = b'{"name":"refused","data":"x","channel":"ip-limited"}'
    async with http.post(signed_url(server.url, "POST", EVENTS, APP, body=body), data=body) as resp:
        statuses.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    elapsed = time.monotonic() - started

    async with http.get(f"{server.url}/openapi.json") as resp:
        assert resp.status == 200  # the document is not part of the rate-limited API
    assert elapsed < 2, "the requests did not fit in one window; the machine is too slow for this test"
    assert [s[0] for s in statuses] == [404, 401, 200, 429, 429]
    assert statuses[3][1:] == ("2", {"error": "Too many requests from this address"})
    assert statuses[4][1:] == ("2", {"error": "Too many requests from this address"})

    await asyncio.sleep(2.05)
    status, _ = await rest(
        http, server.url, "POST", EVENTS, APP, body={"name": "sentinel", "data": "x", "channel": "ip-limited"}
    )
    assert status == 200
    await subscriber.expect_event("ip-limited", "sentinel")
