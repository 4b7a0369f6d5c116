"""A lean HTTP/1.1 client on the event loop: a pool of keep-alive connections, one request in flight on each.

For the few hot calls of the Lambda path (``@connections`` posts): a request is one ``transport.write`` of
bytes the caller already formatted, the answer is parsed from the bytes ``data_received`` hands over, and no
task or thread is created per request. It speaks only what those calls need: ``Content-Length`` and
``chunked`` responses, ``Connection: close``, TLS through the stdlib ``ssl`` module. No redirects, no
cookies, no proxies, no compression.

Why not aiohttp or urllib3 (bench/RESULTS.md "Lean sender" has the figures): aiohttp is not in the Lambda
bundle and importing it costs more than the whole handler's import (its compiled deps would also have to be
bundled per architecture); urllib3 blocks, so concurrency means threads, and the GIL hand-offs of 64 threads
cost more CPU than the requests themselves. asyncio and ssl are imported by the runtime anyway.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit


class HttpError(Exception):
    """No HTTP answer: connection refused or reset, TLS failure, malformed response, or timeout
    (``TimeoutError`` is raised for the latter)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    head: bytes  # the status line and headers, undecoded (callers look up the one header they need)
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The value of one header (``name`` in lower case), or ``None``."""
        return header_value(self.head, name)


def header_value(head: bytes, name: bytes) -> bytes | None:
    lower = head.lower()
    start = lower.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` may only be awaited by one caller at a time (the pool's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.head: bytes | None = None
        self.body_length = -1  # -1: not known yet; -2: chunked
        self.reusable = True
        self.used = 0  # requests answered on this connection
        self.counted = True  # still counted in the pool's open connections
        self.deadline = 0.0  # loop time by which the answer in flight must have come

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:
            self.reusable = False  # bytes nobody asked for: the connection is out of step
            return
        try:
            response = self._parse()
        except (ValueError, IndexError) as exc:
            self.reusable = False
            self._fail(HttpError(f"malformed HTTP response: {exc}"))
            return
        if response is not None:
            waiter, self.waiter = self.waiter, None
            self.used += 1
            if not waiter.done():
                waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.waiter is not None:
            self._fail(HttpError(f"connection closed: {exc or 'by the server'}"))

    # -- one exchange ------------------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self.waiter is None
        self.buffer.clear()
        self.head, self.body_length = None, -1
        self.waiter = self.loop.create_future()
        self.transport.write(request)
        return self.waiter

    def _parse(self) -> Response | None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if head[:5] != b"HTTP/" or head[8:9] != b" ":
                raise ValueError(head[:40].decode("latin-1"))
            status = int(head[9:12])
            if 100 <= status < 200:  # 100 Continue: an interim answer, the real one follows
                return self._parse() if buffer else None
            self.head = head
            lower = head.lower()
            if b"\r\nconnection: close" in lower or head[:8] == b"HTTP/1.0":
                self.reusable = False
            if b"\r\ntransfer-encoding: chunked" in lower:
                self.body_length = -2
            else:
                length = header_value(head, b"content-length")
                self.body_length = int(length) if length is not None else 0
        head = self.head
        if self.body_length == -2:
            body = _dechunk(buffer)
            if body is None:
                return None
        else:
            if len(buffer) < self.body_length:
                return None
            body = bytes(buffer[: self.body_length])
        return Response(int(head[9:12]), head, body)


def _dechunk(buffer: bytearray) -> bytes | None:
    """The body of a complete chunked message, or ``None`` while it is incomplete (trailers ignored)."""
    body = bytearray()
    position = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            return bytes(body) if buffer.find(b"\r\n\r\n", line_end) >= 0 else None
        if len(buffer) < start + size + 2:
            return None
        body += buffer[start : start + size]
        position = start + size + 2


class Http1Pool:
    """Up to ``size`` keep-alive connections to one origin (``http://`` or ``https://`` host and port).

    ``request`` waits for a free connection when all are busy, so the pool also bounds concurrency.
    A request that fails on a *reused* connection before any byte of an answer arrived is sent once more on
    a new connection: the server may close an idle keep-alive connection at any time, and the request
    then never reached it.
    """

    def __init__(
        self, origin: str, *, size: int = 64, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.scheme = parts.scheme
        self.hostname = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        self.host_header = self.hostname if default_port else f"{self.hostname}:{self.port}"
        self.size = max(size, 1)
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0  # connections open or being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.connections_made = 0
        self._closed = False
        self._busy: set[_Connection] = set()
        self._tick = max(min(self.timeout / 4, 1.0), 0.01)  # a late answer fails within timeout + tick
        self._watchdog: asyncio.TimerHandle | None = None

    async def request(self, data: bytes) -> Response:
        """Send one complete request (``data``: request line, headers with ``Host``, body) and read the answer.

        Raises ``HttpError`` or ``TimeoutError`` (``timeout`` covers connecting, sending and the answer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        connection = await self._acquire(loop, deadline)
        try:
            reused = connection.used > 0
            try:
                return await self._exchange(loop, connection, data, deadline)
            except HttpError:
                if not reused or connection.head is not None or loop.time() >= deadline:
                    raise
            self._discard(connection)
            connection = await self._connect(loop, deadline)
            return await self._exchange(loop, connection, data, deadline)
        finally:
            self._release(connection)

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, connection: _Connection, data: bytes, deadline: float
    ) -> Response:
        # No timer per request (scheduling and cancelling one cost more than parsing the answer): the
        # watchdog looks at the connections in flight a few times per timeout.
        connection.deadline = deadline
        waiter = connection.send(data)
        self._busy.add(connection)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._tick, self._watch, loop)
        try:
            return await waiter
        finally:
            self._busy.discard(connection)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in [c for c in self._busy if c.deadline <= now]:
            self._busy.discard(connection)
            if connection.waiter is not None:
                _expire(connection, connection.waiter)
        self._watchdog = loop.call_later(self._tick, self._watch, loop) if self._busy else None

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        while True:
            if self._closed:
                raise HttpError("pool closed")
            while self._idle:
                connection = self._idle.pop()  # most recently used first: the likeliest to be still open
                if connection.reusable:
                    return connection
                self._discard(connection)
            if self._open < self.size:
                return await self._connect(loop, deadline)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_at(deadline, _expire_wait, waiter)
            try:
                await waiter
            finally:
                timer.cancel()

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        self._open += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    self.hostname,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.hostname if self._ssl else None,
                )
        except OSError as exc:
            self._open -= 1
            self._wake()
            raise HttpError(f"cannot connect to {self.host_header}: {exc}") from exc
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        self.connections_made += 1
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.reusable and connection.waiter is None and not self._closed:
            self._idle.append(connection)
        else:
            self._discard(connection)
            return
        self._wake()

    def _discard(self, connection: _Connection) -> None:
        if connection.transport is not None and not connection.transport.is_closing():
            connection.transport.close()
        if connection.counted:
            connection.counted = False
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._idle:
            self._discard(self._idle.pop())
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(HttpError("pool closed"))


def _expire(connection: _Connection, waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        connection.reusable = False
        connection.waiter = None
        waiter.set_exception(TimeoutError("no HTTP answer in time"))


def _expire_wait(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no free connection in time"))
