"""One WebSocket as the engine's ``Transport``: frames corked per event-loop iteration, activity tracked.

Frames are pre-built unmasked WebSocket text frames. A write never awaits and never calls the kernel: it
queues the frame on the socket and the socket joins the :class:`Cork`'s list. Once per event-loop iteration
the cork sends each listed socket everything queued for it in one ``transport.write``, so sixteen publishes
handled in the same iteration cost each subscriber one send, not sixteen (uWebSockets corks the same way).

A broadcast that is the first thing queued in its iteration (a client event, a publish on a quiet server) is
kept whole, as one entry (:meth:`Cork.broadcast`), and written straight from its list before anything queued
after it: no per-socket queueing before the first send, and every socket still gets its frames in the order
they were written. A second broadcast in the same iteration spreads the first over the sockets' own queues,
so a subscriber of both still gets one send.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from typing import cast

from aiohttp import web

from shared.sender.local import Transport

# A client that does not read its socket must not grow our memory without bound (uWS/soketi do the same):
# past this many bytes waiting in its write buffer it is closed with 4100, so pusher-js backs off and
# reconnects instead of hammering a server it cannot keep up with.
MAX_WRITE_BUFFER = 8 * 1024 * 1024
SLOW_CONSUMER_CODE = 4100


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Cork:
    """The sockets with frames queued in this event-loop iteration; one callback at the start of the next
    iteration sends them. One per server (per event loop).

    It also frames the most recent payload once: a broadcast hands the *same* bytes object to every transport,
    so all subscribers after the first reuse the framed bytes instead of building header + payload again.

    ``batch``: a broadcast kept whole (see the module docstring). Everything in ``dirty`` was queued after it,
    so it is written first.
    """

    __slots__ = ("_closing", "batch", "dirty", "payload", "wire")

    def __init__(self) -> None:
        self.batch: tuple[bytes, list[WsTransport]] | None = None
        self.dirty: list[WsTransport] = []
        self.payload: bytes | None = None
        self.wire = b""
        self._closing: set[asyncio.Task[None]] = set()

    def schedule(self) -> None:
        asyncio.get_running_loop().call_soon(self.flush)

    def broadcast(self, transports: list[Transport], frame: bytes) -> None:
        """``LocalSender.fanout`` of the local server: one frame to many sockets, queued as one entry when
        nothing else is queued in this iteration."""
        sockets = cast(list[WsTransport], transports)  # the local server registers nothing else
        if self.batch is not None:
            self.spread()
        if self.dirty:
            for ws in sockets:
                ws.write(frame)
            return
        self.batch = (text_frame(frame), sockets)
        self.schedule()

    def spread(self) -> None:
        """Move the kept broadcast to its sockets' own queues, ahead of what they queued after it."""
        assert self.batch is not None
        (wire, sockets), self.batch = self.batch, None
        dirty = self.dirty
        for ws in sockets:
            if ws.closing:
                continue
            out = ws._out
            if out is None:
                ws._out = wire
                dirty.append(ws)
            elif isinstance(out, list):
                out.insert(0, wire)
            else:
                ws._out = [wire, out]

    def flush(self) -> None:
        if self.batch is not None:
            (wire, sockets), self.batch = self.batch, None
            size = len(wire)
            for ws in sockets:
                transport = ws._transport
                if ws.closing or transport.is_closing():
                    continue
                if transport.get_write_buffer_size() + size > MAX_WRITE_BUFFER:
                    self.too_slow(ws)
                    continue
                transport.write(wire)
        dirty, self.dirty = self.dirty, []
        self.send(dirty)

    def send(self, sockets: Iterable[WsTransport]) -> None:
        """Write each socket's queued frames with one ``transport.write``; past the write bound, close it."""
        for ws in sockets:
            out = ws._out
            if out is None:
                continue
            ws._out = None
            transport = ws._transport
            if ws.closing or transport.is_closing():
                continue
            data = b"".join(out) if isinstance(out, list) else out
            if transport.get_write_buffer_size() + len(data) > MAX_WRITE_BUFFER:
                self.too_slow(ws)
                continue
            transport.write(data)

    def too_slow(self, ws: WsTransport) -> None:
        ws.closing = True
        self.close_later(ws, SLOW_CONSUMER_CODE, "Client is not reading its frames fast enough")

    def close_later(self, transport: WsTransport, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(transport.close_now(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class WsTransport:
    __slots__ = ("_cork", "_out", "_transport", "closing", "last_seen", "pinged_at", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, now: float, cork: Cork) -> None:
        self.ws = ws
        self._transport = transport
        self._cork = cork
        # Frames waiting for the cork: None, one frame, or a list of frames (most sockets hold one at a time).
        self._out: bytes | list[bytes] | None = None
        self.last_seen = now
        self.pinged_at: float | None = None
        self.closing = False

    def write(self, frame: bytes) -> None:
        # The per-delivery hot path of every broadcast: written inline, without helper calls.
        if self.closing:
            return
        cork = self._cork
        if frame is not cork.payload:
            cork.wire = text_frame(frame)
            cork.payload = frame
        out = self._out
        if out is None:
            self._out = cork.wire
            dirty = cork.dirty
            if not dirty:
                cork.schedule()
            dirty.append(self)
        elif isinstance(out, list):
            out.append(cork.wire)
        else:
            self._out = [out, cork.wire]

    def flush(self) -> None:
        """Send what is queued now, ahead of the cork (a close frame must follow the frames written before it)."""
        cork = self._cork
        if cork.batch is not None:
            cork.spread()
        cork.send((self,))

    def seen(self, now: float) -> None:
        self.last_seen = now
        self.pinged_at = None

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.flush()  # frames written before the close go out before the close frame
        self.closing = True
        await self.close_now(code, reason)

    async def close_now(self, code: int, reason: str) -> None:
        """Send the close frame and wait (5 s at most) for the client's; a client that does not answer, or
        does not read at all, is cut off."""
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), timeout=5)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._transport.abort()
