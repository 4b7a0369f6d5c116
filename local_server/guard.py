"""Connections before their WebSocket upgrade, on a short leash: slow heads, idle keep-alives, one address's flood.

aiohttp on its own keeps a connection that has not finished its request head for as long as the client
trickles bytes, and an idle one for an hour (``keepalive_timeout`` 3630 s): 500 sockets sending a partial
upgrade byte by byte each held a file descriptor forever (issue #19.1). Each accepted connection gets a
:class:`GuardedProtocol` in front of aiohttp's ``RequestHandler``:

- the request head must be complete ``header_timeout_seconds`` after the connection opens, or after the
  first byte of the next request on a kept-alive connection; otherwise 408 and close;
- idle keep-alives are closed by aiohttp itself after ``keepalive_seconds`` (passed to the runner);
- one address may hold ``max_pending_per_address`` connections that have not upgraded; the next is answered
  503 at once, before aiohttp parses anything.

Once the connection is a WebSocket the guard steps out of the way (``transport.set_protocol``): frames reach
aiohttp without an extra call, and the socket no longer counts against its address.

It also gives aiohttp a logger (:class:`QuietServerLogger`) that turns malformed requests (``LineTooLong``, too
many headers, a body that does not decode: anyone can send them) into one rate-limited refusal line instead of
an ERROR with a traceback, and says nothing at all when a client leaves in the middle of its request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from shared.metrics.base import Metrics
from shared.ratelog import RateLimitedLog
from shared.refusals import report as report_refusal
from shared.settings import TransportSettings

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"


class QuietServerLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger: a request it could not parse is a client's mistake (a refusal line, no traceback);
    anything else it reports is a bug, logged with its traceback but rate-limited too."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.metrics = metrics
        self.bugs = RateLimitedLog(self.logger)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, RequestPayloadError) and isinstance(exc.__cause__, HttpProcessingError):
            # A body that does not decode (Content-Encoding: gzip on plain bytes, broken chunking): the handler
            # answered 400, then aiohttp met the same error again draining the rest of the body.
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError):
            client = args[0] if args else None
            report_refusal(
                self.metrics,
                kind="http",
                app_id=None,
                code=exc.code or 400,
                reason=f"{type(exc).__name__}: {exc.message}",
                client=str(client) if client is not None else None,
            )
            return
        if isinstance(exc, ConnectionResetError):
            # The client left while its request was being read or answered: nobody's mistake worth a line.
            self.logger.debug("client left during a request: %s", exc)
            return
        if level >= logging.ERROR:
            error = exc if isinstance(exc, BaseException) else None
            self.bugs.log(level, f"aiohttp:{msg}", str(msg), *args, exc_info=error)
            return
        self.logger.log(level, msg, *args, **kwargs)


class ConnectionGuard:
    """The protocol factory of the listening socket: wraps aiohttp's, and counts each address's pending
    connections."""

    def __init__(self, server: Callable[[], RequestHandler], settings: TransportSettings, metrics: Metrics) -> None:
        self.server = server
        self.header_timeout = settings.header_timeout_seconds
        self.max_pending = settings.max_pending_per_address
        self.metrics = metrics
        self.pending: dict[str, set[GuardedProtocol]] = {}
        self.timeouts = 0
        self.refused = 0

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self, self.server())

    def admit(self, protocol: GuardedProtocol) -> bool:
        if not self.max_pending:
            return True
        held = self.pending.setdefault(protocol.address, set())
        if len(held) >= self.max_pending:
            # Sockets that upgraded but have sent nothing since still sit here: count only the real ones.
            for other in [p for p in held if p.upgraded]:
                other.release()
        if len(held) >= self.max_pending:
            self.refused += 1
            report_refusal(
                self.metrics,
                kind="http",
                app_id=None,
                code=503,
                reason=f"over {self.max_pending} connections from this address before their upgrade",
                client=protocol.address,
            )
            return False
        held.add(protocol)
        return True

    def forget(self, protocol: GuardedProtocol) -> None:
        held = self.pending.get(protocol.address)
        if held is not None:
            held.discard(protocol)
            if not held:
                del self.pending[protocol.address]


class GuardedProtocol(asyncio.Protocol):
    """In front of one ``RequestHandler`` until its connection upgrades (then ``set_protocol`` drops it)."""

    __slots__ = ("address", "admitted", "body", "counted", "guard", "inner", "timer", "transport")

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.address = ""
        self.admitted = False
        self.counted = False
        # The body of the newest request whose head aiohttp parsed: while it is unread, bytes are that body's
        # (it has its own deadline, ``body_timeout_seconds``); once it is complete, bytes start the next head.
        self.body: StreamReader | None = None

    @property
    def upgraded(self) -> bool:
        # aiohttp hands the connection to its WebSocket reader with set_parser() (web_ws.py).
        return self.inner._payload_parser is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.admit(self):
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self.admitted = True
        self.counted = bool(self.guard.max_pending)
        self._arm()
        self.inner.connection_made(transport)

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expire)

    def _expire(self) -> None:
        self.timer = None
        transport = self.transport
        if self.upgraded or transport is None or transport.is_closing():
            return
        inner = self.inner
        if inner._request_in_progress or inner._messages:
            # The unfinished head arrived while the previous request's handler was still finishing: answering
            # now would cut into its response. Look again shortly; the 408 goes out once aiohttp is idle.
            self.timer = asyncio.get_running_loop().call_later(0.1, self._expire)
            return
        self.guard.timeouts += 1
        report_refusal(
            self.guard.metrics,
            kind="http",
            app_id=None,
            code=408,
            reason=f"request head not complete within {self.guard.header_timeout:g} s",
            client=self.address,
        )
        transport.write(_TIMEOUT)
        transport.close()

    def release(self) -> None:
        """Stop counting this connection against its address (upgraded or closed)."""
        if self.counted:
            self.counted = False
            self.guard.forget(self)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        before = inner._request_count
        inner.data_received(data)
        if self.upgraded:
            self._step_out()
        elif inner._request_count != before:
            # A request's head is complete: its handler runs; keep-alive and body reads are aiohttp's business.
            # (A pipelined partial head in the same read goes unnoticed: no HTTP client pipelines, and the
            # connection is still closed by the keep-alive bound once the response is out.)
            self.body = inner._messages[-1][1] if inner._messages else None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        elif self.timer is None and (self.body is None or self.body.is_eof()):
            # The first bytes of the next request on a kept-alive connection: the previous body is complete, so
            # these start a head, whether or not the previous handler has finished yet (a client that sends its
            # next request as soon as it has read a response can get here first; the timer then waits for
            # aiohttp to be idle). Bytes of an unfinished body are not a head: its own deadline bounds it.
            self._arm()

    def _step_out(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.release()
        if self.transport is not None:
            self.transport.set_protocol(self.inner)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.release()
        if self.admitted:
            self.inner.connection_lost(exc)
        self.transport = None


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections are created through a :class:`ConnectionGuard`."""

    __slots__ = ("_guard_settings", "_metrics", "guard")

    def __init__(
        self, runner: web.BaseRunner, *args: Any, guard_settings: TransportSettings, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(runner, *args, **kwargs)
        self.guard: ConnectionGuard | None = None
        self._guard_settings = guard_settings
        self._metrics = metrics

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._guard_settings, self._metrics)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
