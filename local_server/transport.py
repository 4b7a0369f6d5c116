"""One WebSocket as the engine's ``Transport``: frames written straight to the socket, activity tracked.

Frames are written as pre-built unmasked WebSocket text frames with one ``transport.write`` call, so a
broadcast costs one header build and one write per subscriber, never an ``await``.
"""

from __future__ import annotations

import asyncio
import struct

from aiohttp import web

# A client that does not read its socket must not grow our memory without bound (uWS/soketi do the same).
MAX_WRITE_BUFFER = 8 * 1024 * 1024


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class _LastFrame:
    """Frames the most recent payload once: a broadcast hands the *same* bytes object to every transport, so all
    subscribers after the first reuse the framed bytes instead of building header + payload again."""

    __slots__ = ("payload", "wire")

    def __init__(self) -> None:
        self.payload: bytes | None = None
        self.wire = b""

    def __call__(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self.wire = text_frame(payload)
            self.payload = payload
        return self.wire


framed = _LastFrame()


class WsTransport:
    __slots__ = ("_transport", "closing", "last_seen", "pinged_at", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, now: float) -> None:
        self.ws = ws
        self._transport = transport
        self.last_seen = now
        self.pinged_at: float | None = None
        self.closing = False

    def write(self, frame: bytes) -> None:
        transport = self._transport
        if self.closing or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.closing = True
            transport.abort()
            return
        transport.write(framed(frame))

    def seen(self, now: float) -> None:
        self.last_seen = now
        self.pinged_at = None

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), timeout=5)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._transport.abort()
