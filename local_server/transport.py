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

**Backpressure** (issue #19.2). A socket whose transport already holds more than ``HIGH_WATER`` bytes its
client has not taken gets no more writes: its frames are *held* here, as references (a broadcast's frame is
one bytes object shared by every socket that holds it), and a pump hands them over in chunks of ``PUMP_CHUNK``
as the transport drains. So what the transport holds ahead of a close frame stays small, and a close with
4100 reaches a client that reads again, instead of waiting behind megabytes. Two bounds:

- per socket, ``max_socket`` held bytes (``transport.max_write_buffer_kb``): past it the socket is closed
  with 4100 and its held frames are dropped;
- per process, ``budget`` held bytes across all sockets (``transport.write_budget_mb``): past it the sockets
  holding the most are closed with 4100 first, until the total is back under 90 % of the budget.

A socket closed for being slow gets its close frame at once and ``CLOSE_WAIT`` seconds to answer; then the
transport is closed gracefully (what it holds, at most ``HIGH_WATER + PUMP_CHUNK``, still goes out as the
client reads) and aborted after ``LINGER`` seconds if the client never reads. After a purge the C allocator
is asked to give freed memory back to the system (glibc ``malloc_trim``), so RSS falls back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.metrics.base import Metrics, NullMetrics
from shared.refusals import report as report_refusal
from shared.sender.local import Transport

# A client that does not read its socket must not grow our memory without bound (uWS/soketi do the same):
# past this many bytes held for it, it is closed with 4100, so pusher-js backs off and reconnects instead of
# hammering a server it cannot keep up with. Defaults of transport.max_write_buffer_kb / write_budget_mb.
MAX_WRITE_BUFFER = 4 * 1024 * 1024
WRITE_BUDGET = 128 * 1024 * 1024
SLOW_CONSUMER_CODE = 4100
HIGH_WATER = 64 * 1024  # bytes in a transport past which frames are held here instead
PUMP_CHUNK = 256 * 1024  # bytes handed to a drained transport per pump
PUMP_INTERVAL = 0.02
CLOSE_WAIT = 5.0  # seconds a slow client gets to answer the close frame
LINGER = 30.0  # seconds a closed transport may take to flush before it is aborted
TRIM_INTERVAL = 1.0  # at most one malloc_trim per second


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``: freed heap pages go back to the system (elsewhere: nothing to call)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return cast(Callable[[int], int] | None, trim)


MALLOC_TRIM = _malloc_trim()


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

    __slots__ = (
        "_closing",
        "_pump",
        "_trimmed_at",
        "batch",
        "budget",
        "dirty",
        "held",
        "held_total",
        "max_socket",
        "metrics",
        "payload",
        "slow_closed",
        "wire",
    )

    def __init__(
        self, *, max_socket: int = MAX_WRITE_BUFFER, budget: int = WRITE_BUDGET, metrics: Metrics | None = None
    ) -> None:
        self.batch: tuple[bytes, list[WsTransport]] | None = None
        self.dirty: list[WsTransport] = []
        self.payload: bytes | None = None
        self.wire = b""
        self._closing: set[asyncio.Task[None]] = set()
        self.max_socket = max_socket
        self.budget = budget
        self.metrics = metrics or NullMetrics()
        self.held: set[WsTransport] = set()  # sockets with frames held here
        self.held_total = 0
        self.slow_closed = 0
        self._pump: asyncio.TimerHandle | None = None
        self._trimmed_at = 0.0

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
            for ws in sockets:
                transport = ws._transport
                if ws.closing or transport.is_closing():
                    continue
                if ws._held is not None or transport.get_write_buffer_size() > HIGH_WATER:
                    self.hold(ws, wire)
                    continue
                transport.write(wire)
        dirty, self.dirty = self.dirty, []
        self.send(dirty)

    def send(self, sockets: Iterable[WsTransport]) -> None:
        """Write each socket's queued frames with one ``transport.write``, or hold them if it is backed up."""
        for ws in sockets:
            out = ws._out
            if out is None:
                continue
            ws._out = None
            transport = ws._transport
            if ws.closing or transport.is_closing():
                continue
            if ws._held is not None or transport.get_write_buffer_size() > HIGH_WATER:
                self.hold(ws, out)
                continue
            transport.write(b"".join(out) if isinstance(out, list) else out)

    # -- backpressure ---------------------------------------------------------------------------------

    def hold(self, ws: WsTransport, frames: bytes | list[bytes]) -> None:
        """Keep frames for a backed-up socket (after any it already holds); enforce both bounds."""
        held = ws._held
        if held is None:
            held = ws._held = []
            self.held.add(ws)
            if self._pump is None:
                self._pump = asyncio.get_running_loop().call_later(PUMP_INTERVAL, self.pump)
        if isinstance(frames, list):
            held.extend(frames)
            size = sum(len(f) for f in frames)
        else:
            held.append(frames)
            size = len(frames)
        ws._held_bytes += size
        self.held_total += size
        if ws._held_bytes > self.max_socket:
            self.too_slow(ws, f"over {self.max_socket // 1024} KB waiting for it")
        elif self.held_total > self.budget:
            self.shed()

    def shed(self) -> None:
        """Over the process budget: close the sockets holding the most until 90 % of it is left."""
        target = self.budget * 9 // 10
        for ws in sorted(self.held, key=lambda w: w._held_bytes, reverse=True):
            if self.held_total <= target:
                break
            self.too_slow(ws, f"the server's write budget ({self.budget // (1024 * 1024)} MB) is used up")

    def drop(self, ws: WsTransport) -> None:
        """Forget what is held for ``ws``."""
        if ws._held is not None:
            self.held_total -= ws._held_bytes
            ws._held = None
            ws._held_bytes = 0
            self.held.discard(ws)

    def pump(self) -> None:
        """Hand held frames to the transports that drained (a chunk each), every ``PUMP_INTERVAL``."""
        self._pump = None
        for ws in list(self.held):
            transport = ws._transport
            held = ws._held
            if held is None:
                continue
            if ws.closing or transport.is_closing():
                self.drop(ws)
                continue
            if transport.get_write_buffer_size() > HIGH_WATER // 4:
                continue
            taken = sent = 0
            while taken < len(held) and sent < PUMP_CHUNK:
                sent += len(held[taken])
                taken += 1
            transport.write(b"".join(held[:taken]))
            del held[:taken]
            ws._held_bytes -= sent
            self.held_total -= sent
            if not held:
                ws._held = None
                self.held.discard(ws)
        if self.held:
            self._pump = asyncio.get_running_loop().call_later(PUMP_INTERVAL, self.pump)

    def too_slow(self, ws: WsTransport, why: str) -> None:
        self.drop(ws)
        ws.closing = True
        self.slow_closed += 1
        report_refusal(
            self.metrics,
            kind="websocket",
            app_id=ws.app_id,
            code=SLOW_CONSUMER_CODE,
            reason=f"client not reading its frames: {why}",
            socket_id=ws.socket_id,
        )
        self.close_later(ws, SLOW_CONSUMER_CODE, "Client is not reading its frames fast enough")
        now = time.monotonic()
        if MALLOC_TRIM is not None and now - self._trimmed_at >= TRIM_INTERVAL:
            self._trimmed_at = now
            asyncio.get_running_loop().call_later(CLOSE_WAIT + 1, MALLOC_TRIM, 0)

    def close_later(self, transport: WsTransport, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(transport.close_now(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class WsTransport:
    __slots__ = (
        "_cork",
        "_held",
        "_held_bytes",
        "_out",
        "_transport",
        "app_id",
        "close_code",
        "closing",
        "last_seen",
        "pinged_at",
        "socket_id",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        now: float,
        cork: Cork,
        *,
        app_id: str | None = None,
        socket_id: str | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self._cork = cork
        self.app_id = app_id
        self.socket_id = socket_id
        # Frames held while the transport is backed up (see Cork.hold), and their size.
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self.close_code: int | None = None  # the code this server closed with, if it did
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
        held = self._held
        if held is not None:  # held for a backed-up socket: they go first too (bounded by max_socket)
            self._cork.drop(self)
            self._transport.write(b"".join(held))
        self.closing = True
        await self.close_now(code, reason)

    async def close_now(self, code: int, reason: str) -> None:
        """Send the close frame and wait ``CLOSE_WAIT`` seconds at most for the client's. A client that does
        not answer may still be reading slowly: the transport is closed gracefully, so the close frame goes
        out after what it already holds, and aborted only if that takes over ``LINGER`` seconds."""
        self.close_code = code
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), timeout=CLOSE_WAIT)
        except (TimeoutError, ConnectionError, RuntimeError):
            transport = self._transport
            if not transport.is_closing():
                transport.close()
            asyncio.get_running_loop().call_later(LINGER, transport.abort)


class CorkCollector(Collector):
    """The cork's backpressure on ``/metrics``: bytes held for backed-up sockets, slow sockets closed."""

    def __init__(self, cork: Cork) -> None:
        self.cork = cork

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sockless_write_held_bytes",
            "Bytes of frames held for sockets whose clients read slower than they are sent to",
            value=self.cork.held_total,
        )
        yield GaugeMetricFamily(
            "sockless_write_held_sockets", "Sockets with frames held for them", value=len(self.cork.held)
        )
        yield CounterMetricFamily(
            "sockless_slow_consumers_closed", "Sockets closed with 4100 for not reading", value=self.cork.slow_closed
        )
