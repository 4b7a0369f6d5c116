"""A minimal asyncio WebSocket client for load generation: handshake by hand, frames parsed without copies.

The load generator must not be the bottleneck: aiohttp's client costs several µs per frame, this costs about one.
Server frames are unmasked; client frames are masked with a zero key (allowed by RFC 6455, and cheap).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + b"\x00\x00\x00\x00" + payload  # zero mask key: payload unchanged


# Every client reads into this one buffer (a BufferedProtocol: no bytes object allocated per read); each read
# is consumed before the next one starts, on the one thread of the generator.
_READ_BUFFER = memoryview(bytearray(256 * 1024))


class WsClient(asyncio.BufferedProtocol):
    """Counts text frames; hands each one to ``on_frame`` when set (parse only what a scenario needs)."""

    def __init__(self, on_frame: Callable[[WsClient, bytes, float], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.frames = 0
        self.on_frame = on_frame
        self.socket_id: str | None = None
        self.established = asyncio.get_running_loop().create_future()
        self.waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]] = []
        self._upgraded = False
        # Counting mode: once a scenario knows every frame has the same size, it counts bytes, not frames,
        # so the generator spends no Python work per frame.
        self.counting = False
        self.nbytes = 0
        # Wall-clock time the last read's bytes reached the socket (bench.loadgen.read_with_kernel_stamps).
        self.kernel_time = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(json.dumps(message).encode()))

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append((predicate, future))
        return future

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self.counting:
            self.nbytes += nbytes
            return
        self.data_received(_READ_BUFFER[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        buf = self.buffer
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(ConnectionError(bytes(buf[:200]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self._upgraded = True
            self.handshaken.set_result(None)
        now = time.perf_counter()
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if n - pos < 4:
                    break
                b1 = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif b1 == 127:
                if n - pos < 10:
                    break
                b1 = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if n - pos < head + b1:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 0x1:
                self.frames += 1
                if self.on_frame is not None or self.socket_id is None or self.waiters:
                    self._frame(bytes(buf[pos + head : pos + head + b1]), now)
            elif opcode == 0x8 and not self.closed.done():
                code = struct.unpack_from("!H", buf, pos + head)[0] if b1 >= 2 else 1005
                self.closed.set_result(code)
            pos += head + b1
        if pos:
            del buf[:pos]

    def _frame(self, payload: bytes, now: float) -> None:
        if self.socket_id is None:
            msg = json.loads(payload)
            if msg.get("event") == "pusher:connection_established":
                self.socket_id = json.loads(msg["data"])["socket_id"]
                self.established.set_result(self.socket_id)
                return
        if self.waiters:
            msg = json.loads(payload)
            for item in list(self.waiters):
                if item[0](msg):
                    self.waiters.remove(item)
                    if not item[1].done():
                        item[1].set_result(msg)
        if self.on_frame is not None:
            self.on_frame(self, payload, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError("closed during handshake"))


async def connect(
    host: str,
    port: int,
    path: str,
    on_frame: Callable[[WsClient, bytes, float], None] | None = None,
    rcvbuf: int | None = None,
) -> WsClient:
    """``rcvbuf``: a small kernel receive buffer, so a client that stops reading makes the server buffer at once."""
    loop = asyncio.get_running_loop()
    if rcvbuf is None:
        _, client = await loop.create_connection(lambda: WsClient(on_frame), host, port)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        _, client = await loop.create_connection(lambda: WsClient(on_frame), sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    assert client.transport is not None
    client.transport.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await client.handshaken
    return client
