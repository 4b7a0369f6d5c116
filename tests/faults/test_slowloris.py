"""#19.1: connections that never finish their request, idle keep-alives and one address's flood are bounded.

The server under test uses short bounds (1 s head, 2 s keep-alive, 4 pending per address) so the suite stays
quick; the defaults (10 s, 60 s, 256) are the same code with other numbers (docs/operating-limits.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from local_server.guard import GuardedSite
from shared.metrics.base import NullMetrics
from shared.settings import TransportSettings
from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess
from tests.support import APP_ID, log_lines, metric, open_raw, read_until_closed, signed_params, upgrade_request

LIMITS = {
    "header_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.5,
    "keepalive_seconds": 2.0,
    "max_pending_per_address": 4,
}


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [DEFAULT_APP], "transport": LIMITS}).start()
    yield proc
    proc.cleanup()


async def test_a_request_head_sent_byte_by_byte_is_closed_after_the_header_timeout(guarded: ServerProcess) -> None:
    timeouts = await metric(guarded, "sockless_refusals_total", kind="http", code="408")
    reader, writer = await open_raw(guarded.port)
    request = upgrade_request()

    async def trickle() -> None:
        for byte in request[:-2]:  # never the final CRLF
            writer.write(bytes((byte,)))
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    started = time.monotonic()
    try:
        answer = await read_until_closed(reader, timeout=5)
    finally:
        trickling.cancel()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < elapsed < 3, elapsed
    writer.close()
    assert await metric(guarded, "sockless_refusals_total", kind="http", code="408") == timeouts + 1


async def test_a_socket_that_sends_nothing_is_closed_after_the_header_timeout(guarded: ServerProcess) -> None:
    reader, writer = await open_raw(guarded.port)
    assert (await read_until_closed(reader, timeout=5)).startswith(b"HTTP/1.1 408")
    writer.close()


async def test_an_idle_keep_alive_is_closed_after_the_keepalive_timeout(guarded: ServerProcess) -> None:
    reader, writer = await open_raw(guarded.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    await reader.readexactly(length)
    started = time.monotonic()
    assert await read_until_closed(reader, timeout=6) == b""
    assert 1.5 < time.monotonic() - started < 5
    writer.close()


async def test_a_kept_alive_connection_must_finish_its_next_head_in_time(guarded: ServerProcess) -> None:
    reader, writer = await open_raw(guarded.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    await reader.readexactly(length)
    writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
    started = time.monotonic()
    assert (await read_until_closed(reader, timeout=5)).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 1.9  # the head's bound, not the 2 s keep-alive
    writer.close()


async def test_one_address_holds_a_bounded_number_of_connections_before_the_upgrade(guarded: ServerProcess) -> None:
    busy = await metric(guarded, "sockless_refusals_total", kind="http", code="503")
    held = [await open_raw(guarded.port) for _ in range(4)]
    for _, writer in held:
        writer.write(b"GET / HTTP/1.1\r\n")
    # The fifth is answered at once, before its head is even read.
    reader, writer = await open_raw(guarded.port)
    assert (await read_until_closed(reader, timeout=1)).startswith(b"HTTP/1.1 503")
    writer.close()
    assert await metric(guarded, "sockless_refusals_total", kind="http", code="503") == busy + 1
    for _, w in held:
        w.close()


async def test_websockets_do_not_count_against_their_address(guarded: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(f"{guarded.ws_url}/app/app-key?protocol=7") for _ in range(6)]
        for ws in sockets:
            assert (await ws.receive_json(timeout=5))["event"] == "pusher:connection_established"
        # Six open WebSockets from this address, and a plain request still gets through.
        async with http.get(guarded.url + "/") as response:
            assert response.status == 200
        # They outlive the head timeout and the keep-alive timeout: only the protocol's activity check applies.
        await asyncio.sleep(2.5)
        for ws in sockets:
            await ws.send_json({"event": "pusher:ping", "data": {}})
            assert (await ws.receive_json(timeout=5))["event"] == "pusher:pong"
            await ws.close()


async def test_malformed_requests_cost_one_log_line_per_interval_and_no_traceback(guarded: ServerProcess) -> None:
    async def bad(request: bytes) -> bytes:
        reader, writer = await open_raw(guarded.port)
        writer.write(request)
        answer = await read_until_closed(reader, timeout=5)
        writer.close()
        return answer

    malformed = await metric(guarded, "sockless_refusals_total", kind="http", code="400")
    for _ in range(20):
        assert (
            (await bad(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
            .split(b"\r\n")[0]
            .endswith(b"400 Bad Request")
        )
    headers: Any = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    for _ in range(20):
        assert (
            (await bad(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"))
            .split(b"\r\n")[0]
            .endswith(b"400 Bad Request")
        )
    assert await metric(guarded, "sockless_refusals_total", kind="http", code="400") == malformed + 40
    output = guarded.output()
    assert "Traceback" not in output
    assert "Error handling request" not in output
    assert len([line for line in log_lines(guarded, "refused kind=http") if "code=400" in line]) <= 2, output


async def test_a_body_that_does_not_decode_or_a_client_leaving_mid_body_logs_no_traceback(
    guarded: ServerProcess,
) -> None:
    """Found by the fuzzer (python -m bench.faults fuzz): aiohttp met a body that does not match its
    Content-Encoding again after the 400, and a client gone mid-body failed the handler's read; both were
    logged as bugs, with a traceback."""
    path = f"/apps/{APP_ID}/events"
    body = b'{"name":"ev"}'  # not gzip
    before = await metric(guarded, "sockless_refusals_total", kind="http", code="400")
    async with aiohttp.ClientSession() as http:
        for _ in range(10):
            async with http.post(
                guarded.url + path,
                params=signed_params("POST", path, body),
                data=body,
                headers={"Content-Encoding": "gzip"},
            ) as response:
                assert response.status == 400
    assert await metric(guarded, "sockless_refusals_total", kind="http", code="400") > before
    for _ in range(5):
        _reader, writer = await open_raw(guarded.port)
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" % path.encode() + b"{" * 1000)
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.3)
    output = guarded.output()
    assert "Traceback" not in output
    assert "Error handling request" not in output and "Unhandled exception" not in output, output


async def test_a_rest_body_sent_byte_by_byte_is_answered_408_at_the_body_timeout(guarded: ServerProcess) -> None:
    timeouts = await metric(guarded, "sockless_refusals_total", kind="http", code="408")
    reader, writer = await open_raw(guarded.port)
    writer.write(f"POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(100):
            writer.write(b"{")
            await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    try:
        status = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        trickling.cancel()
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert 1.4 <= time.monotonic() - started < 5
    assert await metric(guarded, "sockless_refusals_total", kind="http", code="408") == timeouts + 1


async def test_a_kept_alive_request_whose_deflate_body_does_not_decode_is_answered(guarded: ServerProcess) -> None:
    """Found by the fuzzer: aiohttp 3.14 never ends the body read of such a request on a kept-alive connection,
    so it hung until the client gave up; the body timeout answers it."""
    path = f"/apps/{APP_ID}/events"
    body = b"{" * 100_000
    async with aiohttp.ClientSession() as http:
        async with http.get(guarded.url + "/up") as response:  # the connection the next request reuses
            assert response.status == 200
        started = time.monotonic()
        async with http.post(
            guarded.url + path,
            params=signed_params("POST", path, body),
            data=body,
            headers={"Content-Encoding": "deflate"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            assert response.status in (400, 408)
        assert time.monotonic() - started < 5


async def test_a_next_head_begun_while_the_previous_handler_finishes_still_gets_its_408() -> None:
    """The race CI found: a client that sends its next (partial) head as soon as it has read a response can get
    there before the handler's task has ended. The guard must still time that head out, not leave the connection
    to the keep-alive bound. Here the handler sends its whole response and then keeps running for 0.5 s, so the
    partial head always lands while a request is still in progress."""
    handler_done = asyncio.Event()

    async def answer_then_linger(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="ok")
        await response.prepare(request)
        await response.write_eof()
        await asyncio.sleep(0.5)
        handler_done.set()
        return response

    app = web.Application()
    app.router.add_get("/", answer_then_linger)
    limits = TransportSettings.model_validate(LIMITS)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=limits.keepalive_seconds)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard_settings=limits, metrics=NullMetrics())
    await site.start()
    try:
        reader, writer = await open_raw(int(runner.addresses[0][1]))
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await reader.readuntil(b"ok")
        writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more, while the handler is still running
        started = time.monotonic()
        assert not handler_done.is_set()
        assert (await read_until_closed(reader, timeout=5)).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 1.9  # the head's bound, not the 2 s keep-alive
        assert handler_done.is_set()  # the 408 waited for the handler: it never cut into a response
        writer.close()
    finally:
        await runner.cleanup()
