"""A subscriber that stops reading must not grow the server's memory without bound nor hold back the others:
past its write bound the server closes it with 4100 (pusher-js backs off and reconnects)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time

import aiohttp

from local_server.transport import MAX_WRITE_BUFFER
from shared.auth.signatures import sign_request
from tests.serverproc import ServerProcess

PATH = "/app/app-key?protocol=7&client=raw&version=0"
EVENT_DATA = "x" * 9_000  # under the default 10 KB event limit
BATCH = 10  # events per batch request (the default batch limit)


async def _raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client with a tiny kernel receive buffer: when it stops reading, the backlog is the server's."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def _next_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return head[0] & 0x0F, await reader.readexactly(size)


def _send_text(writer: asyncio.StreamWriter, message: dict[str, object]) -> None:
    payload = json.dumps(message).encode()
    assert len(payload) < 126
    writer.write(bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload)  # zero mask key


async def _batch(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    path = "/apps/100001/batch_events"
    body = json.dumps({"batch": [{"name": "bulk", "channel": "feed", "data": EVENT_DATA}] * BATCH}).encode()
    params = {
        "auth_key": "app-key",
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    params["auth_signature"] = sign_request("app-secret", "POST", path, params)
    async with http.post(server.url + path, params=params, data=body) as response:
        assert response.status == 200, await response.text()


async def test_stalled_subscriber_is_closed_with_4100_and_the_others_get_every_event(server: ServerProcess) -> None:
    # Enough to fill the kernel's buffers (a few MB on loopback) and then the server's write bound.
    batches = (MAX_WRITE_BUFFER + 8 * 1024 * 1024) // (len(EVENT_DATA) * BATCH) + 1
    reader, writer = await _raw_client(server.port)
    assert json.loads((await _next_frame(reader))[1])["event"] == "pusher:connection_established"
    _send_text(writer, {"event": "pusher:subscribe", "data": {"channel": "feed"}})
    assert json.loads((await _next_frame(reader))[1])["event"] == "pusher_internal:subscription_succeeded"
    # From here on the raw client reads nothing until every event has been published.

    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url + PATH) as healthy:
        await healthy.receive_json()  # connection_established
        await healthy.send_json({"event": "pusher:subscribe", "data": {"channel": "feed"}})
        assert (await healthy.receive_json())["event"] == "pusher_internal:subscription_succeeded"

        async def count_events() -> int:
            seen = 0
            while seen < batches * BATCH:
                message = await healthy.receive_json(timeout=20)
                seen += message["event"] == "bulk"
            return seen

        counting = asyncio.create_task(count_events())
        for _ in range(batches):
            await _batch(http, server)
        assert await counting == batches * BATCH

        # The stalled client reads again: what the server had buffered, then its close frame.
        received = 0
        while True:
            opcode, payload = await asyncio.wait_for(_next_frame(reader), 10)
            if opcode == 0x8:
                break
            received += 1
        assert struct.unpack("!H", payload[:2])[0] == 4100
        assert received < batches * BATCH  # frames past the bound were never queued for it
        writer.close()

        # The server goes on serving the healthy client (the default app also reports subscription counts).
        await _batch(http, server)
        while (await healthy.receive_json(timeout=5))["event"] != "bulk":
            pass
