"""A lean HTTP/1.1 client for bursts of small requests to one origin: keep-alive sockets driven by epoll in one
worker thread, one request in flight per socket.

For the hot calls of the Lambda path (``@connections`` posts): a broadcast is handed to the worker thread as
one batch; the thread writes each request with one ``send``, reads the answer with one ``recv``, and sends the
socket's next request at once, with no event-loop callback, future or task per request. TLS goes through
``ssl.SSLSocket`` (C) in non-blocking mode. It speaks only what those calls need: ``Content-Length`` and
``chunked`` answers, ``Connection: close``, no redirects, cookies, proxies or compression.

Why not asyncio transports, aiohttp or urllib3 (bench/RESULTS.md "Lean sender" has the figures): asyncio's
TLS layer is Python code run for every record, and its callbacks, futures and task wake-ups cost more than
building and signing the request; aiohttp is not in the Lambda bundle and costs more to import than the
whole handler; urllib3 blocks, so concurrency needs one thread per connection and pays GIL hand-offs.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import select
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """No HTTP answer: connection refused or reset, TLS failure, malformed answer."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    head: bytes  # status line and headers, undecoded (callers look up the one header they need)
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


# What the caller does with each request of a batch: build its bytes (again for a retry: a fresh signature),
# and settle it with its answer or error, returning a delay before retrying it, or None when it is done.
Build = Callable[[int], bytes]
Settle = Callable[[int, "Response | Exception"], "float | None"]

_CONNECTING, _HANDSHAKE, _IDLE, _SENDING, _READING = range(5)
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT


class _Connection:
    __slots__ = ("buffer", "deadline", "events", "head", "index", "length", "out", "reused", "sock", "state")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = _CONNECTING
        self.buffer = bytearray()
        self.out = b""  # bytes of the request not written yet
        self.index = -1  # the request in flight
        self.reused = False  # an answer came on this connection before (it may have gone stale since)
        self.deadline = 0.0
        self.head: bytes | None = None
        self.length = -1  # body length; -2: chunked
        self.events = 0  # what epoll watches for on the socket

    def parse(self) -> Response | None:
        """The answer, once complete; raises ``ValueError`` on a malformed one."""
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if head[:5] != b"HTTP/" or head[8:9] != b" ":
                raise ValueError(head[:40].decode("latin-1"))
            if head[9:10] == b"1":  # 1xx: an interim answer, the real one follows
                return self.parse()
            lower = head.lower()
            if b"\r\ntransfer-encoding: chunked" in lower:
                self.length = -2
            else:
                length = header_value(head, b"content-length")
                self.length = int(length) if length is not None else 0
            self.head = head
        if self.length == -2:
            body = _dechunk(buffer)
            if body is None:
                return None
        elif len(buffer) < self.length:
            return None
        else:
            body = bytes(buffer[: self.length])
        head, self.head = self.head, None
        buffer.clear()
        return Response(int(head[9:12]), head, body)

    def keep_alive(self, response: Response) -> bool:
        lower = response.head.lower()
        return b"\r\nconnection: close" not in lower and response.head[:8] != b"HTTP/1.0"


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
    """Up to ``size`` keep-alive connections to one origin (``http://`` or ``https://`` host and port), kept
    between batches and used by one worker thread only.

    ``timeout`` covers connecting and each request's answer; a request that gets no answer in time is settled
    with ``TimeoutError``. A request that fails on a *reused* connection before any byte of an answer arrived
    is sent again on a new connection without being settled: the server may close an idle keep-alive
    connection at any time, and the request then never reached it.
    """

    def __init__(
        self, origin: str, *, size: int = 64, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.hostname = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        self.host_header = self.hostname if default_port else f"{self.hostname}:{self.port}"
        self.size = max(size, 1)
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: list[_Connection] = []
        self._address: tuple[int, tuple[str, int]] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.connections_made = 0
        self.closed = False

    # -- the asyncio face ------------------------------------------------------------------------------------

    async def run(self, count: int, build: Build, settle: Settle) -> None:
        """Run a batch of ``count`` requests in the pool's thread; returns when every one is settled."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http1")
        await asyncio.get_running_loop().run_in_executor(self._thread, self.exchange, count, build, settle)

    async def close(self) -> None:
        self.closed = True
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(None, thread.shutdown)
        for connection in self._idle:
            connection.sock.close()
        self._idle.clear()

    # -- the worker thread -----------------------------------------------------------------------------------

    def exchange(self, count: int, build: Build, settle: Settle) -> None:
        """Blocking: send requests ``0 .. count-1``, settle each one, retry those ``settle`` asks to retry.

        A connection that cannot be opened (refused, TLS failure, connect timeout) settles one waiting request
        with the error, so a dead endpoint costs each request one attempt per connection tried, and the
        caller's retry policy decides when to give up."""
        if self.closed:
            raise HttpError("pool closed")
        poller = select.epoll()
        by_fd: dict[int, _Connection] = {}
        pending = list(range(count - 1, -1, -1))  # a stack: requests go out in order
        retries: list[tuple[float, int, int]] = []  # (due, sequence, index)
        sequence = itertools.count()
        unsettled = count

        def settle_one(index: int, outcome: Response | Exception) -> None:
            nonlocal unsettled
            delay = settle(index, outcome)
            if delay is None:
                unsettled -= 1
            else:
                heapq.heappush(retries, (time.monotonic() + delay, next(sequence), index))

        def next_index(now: float) -> int | None:
            if retries and retries[0][0] <= now:
                return heapq.heappop(retries)[2]
            return pending.pop() if pending else None

        def drop(connection: _Connection) -> None:
            fd = connection.sock.fileno()
            if by_fd.pop(fd, None) is not None:
                poller.unregister(fd)
            connection.sock.close()

        def cannot_connect(connection: _Connection, reason: object) -> None:
            drop(connection)
            index = next_index(time.monotonic())
            if index is not None:
                settle_one(index, HttpError(f"cannot connect to {self.host_header}: {reason}"))

        def fail(connection: _Connection, exc: Exception) -> None:
            """The connection broke: its request is settled, or sent again if the connection had gone stale."""
            index = connection.index
            stale = connection.reused and not connection.buffer and connection.head is None
            drop(connection)
            if index < 0:
                return
            if stale and not isinstance(exc, TimeoutError):
                pending.append(index)
            else:
                settle_one(index, exc)

        def start(connection: _Connection) -> None:
            """Send the next request on an idle connection, or leave it idle."""
            while True:
                now = time.monotonic()
                index = next_index(now)
                if index is None:
                    connection.state, connection.index = _IDLE, -1
                    watch(connection, 0)
                    return
                try:
                    data = build(index)
                except Exception as exc:  # a request that cannot be built fails alone
                    settle_one(index, exc)
                    continue
                break
            connection.index, connection.deadline, connection.out = index, now + self.timeout, data
            connection.state = _SENDING
            write(connection)

        def write(connection: _Connection) -> None:
            try:
                sent = connection.sock.send(connection.out)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                sent = 0
            except OSError as exc:
                fail(connection, HttpError(f"send failed: {exc}"))
                return
            connection.out = connection.out[sent:]
            if connection.out:
                watch(connection, _OUT)
            else:
                connection.state = _READING
                watch(connection, _IN)

        def read(connection: _Connection) -> None:
            sock = connection.sock
            try:
                data = sock.recv(65536)
                while isinstance(sock, ssl.SSLSocket) and sock.pending():
                    data += sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError as exc:
                fail(connection, HttpError(f"recv failed: {exc}"))
                return
            if not data:
                fail(connection, HttpError("connection closed by the server"))
                return
            connection.buffer += data
            try:
                response = connection.parse()
            except (ValueError, IndexError) as exc:
                fail(connection, HttpError(f"malformed HTTP answer: {exc}"))
                return
            if response is None:
                return
            index, connection.index, connection.reused = connection.index, -1, True
            keep = connection.keep_alive(response)
            if not keep:
                drop(connection)
            settle_one(index, response)
            if keep:
                start(connection)

        def handshake(connection: _Connection) -> None:
            sock = connection.sock
            try:
                sock.do_handshake()  # type: ignore[attr-defined]
            except ssl.SSLWantReadError:
                watch(connection, _IN)
                return
            except ssl.SSLWantWriteError:
                watch(connection, _OUT)
                return
            except (OSError, ValueError) as exc:
                cannot_connect(connection, f"TLS handshake failed: {exc}")
                return
            start(connection)

        def connected(connection: _Connection) -> None:
            error = connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                cannot_connect(connection, errno.errorcode.get(error, error))
                return
            if self._ssl is None:
                start(connection)
                return
            fd = connection.sock.fileno()
            poller.unregister(fd)
            del by_fd[fd]
            connection.sock = self._ssl.wrap_socket(
                connection.sock, server_hostname=self.hostname, do_handshake_on_connect=False
            )
            connection.state = _HANDSHAKE
            register(connection, _OUT)
            handshake(connection)

        def register(connection: _Connection, events: int) -> None:
            by_fd[connection.sock.fileno()] = connection
            poller.register(connection.sock.fileno(), events)
            connection.events = events

        def watch(connection: _Connection, events: int) -> None:
            """Watch the socket for ``events``; a syscall only when that changes (a keep-alive connection
            stays on ``EPOLLIN`` from one request to the next)."""
            if connection.events != events:
                poller.modify(connection.sock.fileno(), events)
                connection.events = events

        def open_connection() -> None:
            if self._address is None:
                try:
                    found = socket.getaddrinfo(self.hostname, self.port, type=socket.SOCK_STREAM)[0]
                except OSError as exc:
                    index = next_index(time.monotonic())
                    if index is not None:
                        settle_one(index, HttpError(f"cannot resolve {self.hostname}: {exc}"))
                    return
                self._address = (int(found[0]), (str(found[4][0]), int(found[4][1])))
            family, address = self._address
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(sock)
            connection.deadline = time.monotonic() + self.timeout
            self.connections_made += 1
            register(connection, _OUT)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                cannot_connect(connection, errno.errorcode.get(code, code))

        try:
            while self._idle and len(by_fd) < min(self.size, count):
                reused = self._idle.pop()
                register(reused, 0)
                start(reused)
            while unsettled > 0:
                now = time.monotonic()
                due = bool(pending) or bool(retries and retries[0][0] <= now)
                if due:
                    for connection in [c for c in by_fd.values() if c.state == _IDLE]:
                        start(connection)
                    waiting = len(pending) + sum(1 for r in retries if r[0] <= now)
                    opening = sum(1 for c in by_fd.values() if c.state in (_CONNECTING, _HANDSHAKE))
                    for _ in range(min(self.size - len(by_fd), waiting - opening)):
                        open_connection()
                    if unsettled <= 0:
                        break
                deadlines = [c.deadline for c in by_fd.values() if c.state != _IDLE]
                if retries:
                    deadlines.append(retries[0][0])
                wait = min(max(min(deadlines) - now, 0.0), self.timeout) if deadlines else 0.0
                for fd, events in poller.poll(wait):
                    ready = by_fd.get(fd)
                    if ready is None:
                        continue
                    state = ready.state
                    if state == _READING:
                        read(ready)
                    elif state == _SENDING:
                        write(ready)
                    elif state == _CONNECTING:
                        connected(ready)
                    elif state == _HANDSHAKE:
                        handshake(ready)
                    elif events & (select.EPOLLHUP | select.EPOLLERR):
                        drop(ready)  # an idle connection the server closed
                now = time.monotonic()
                for late in [c for c in by_fd.values() if c.state != _IDLE and c.deadline <= now]:
                    if late.state in (_CONNECTING, _HANDSHAKE):
                        cannot_connect(late, "timed out")
                    else:
                        fail(late, TimeoutError("no HTTP answer in time"))
        finally:
            for left in list(by_fd.values()):
                if left.state == _IDLE and not self.closed:
                    poller.unregister(left.sock.fileno())
                    self._idle.append(left)
                else:
                    left.sock.close()
            poller.close()
