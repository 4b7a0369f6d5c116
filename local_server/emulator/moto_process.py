"""moto in a process of its own: the emulated DynamoDB and SQS on the machine's second core.

The emulator is one Python process: API Gateway's stand-in, every Lambda container and, in-process, moto take
turns on one interpreter lock, so a connect storm runs on one core however many the machine has. moto's
share of that CPU (its request parsing, the operations, the answers) is about half (bench/RESULTS.md,
"Emulator speed"). Here moto runs in a child process and serves what the emulator's gate (``aws.Moto``:
IAM, the request count, the meter's observers) forwards to it over a socket pair.

Order and atomicity are kept: the child serves one request at a time, in the order they were sent, and
answers in that order; the reader thread of the parent takes the answers in turn and runs the observers
(the billing meter, the SQS pollers' wake-ups, the DynamoDB stream) on each before its caller resumes, so
they see the requests in the order moto applied them, as in-process. Callers need not wait for each
other: several requests can be in the pipe, so the child is not idle while a caller waits its turn for the
parent's interpreter lock.

Wire: each message is a pickled tuple (``multiprocessing.connection.Connection`` framing). A request is
``(service, method, url, headers, body, operation, sizes)``; an answer ``(status, headers, body, sizes, cpu)``,
``sizes`` the item sizes before a DynamoDB write when asked (``aws.item_sizes_before``), ``cpu`` the child's
CPU seconds on it.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger("sockless.emulator")

# (service, method, url, headers, body, operation, whether to read the written items' sizes first)
Request = tuple[str, str, str, dict[str, str], bytes, str, bool]
# (status, headers, body, item sizes before the write, the child's CPU seconds)
Reply = tuple[int, list[tuple[str, str]], bytes, dict[tuple[str, str], int | None], float]

ROOT = Path(__file__).resolve().parents[2]
_EXITED: Reply = (
    500,
    [("Content-Type", "application/x-amz-json-1.0")],
    b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the moto process exited"}',
    {},
    0.0,
)


class _Pending:
    __slots__ = ("done", "reply", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.reply: Reply = _EXITED
        self.done = threading.Event()


class MotoProcess:
    """The parent's side: ``call`` sends a request and returns its answer; ``on_reply(request, reply)`` runs on
    the reader thread for every answer, in order, before its caller resumes."""

    def __init__(self, on_reply: Callable[[Request, Reply], None]) -> None:
        self.on_reply = on_reply
        self._send_lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._exited = False

    def start(self) -> None:
        parent, child = socket.socketpair()
        env = {k: v for k, v in _process_environ().items() if not k.startswith("AWS_ENDPOINT_URL")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "local_server.emulator.moto_process", str(child.fileno())],
            pass_fds=[child.fileno()],
            env=env,
            cwd=ROOT,
        )
        child.close()
        self._conn = Connection(parent.detach())
        if self._conn.recv_bytes() != b"ready":
            raise RuntimeError("the moto process did not start")
        self._reader = threading.Thread(target=self._read, name="moto-process", daemon=True)
        self._reader.start()

    def call(self, request: Request) -> Reply:
        pending = _Pending(request)
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            if self._exited or self._conn is None:
                return _EXITED
            self._pending.append(pending)
            self._conn.send_bytes(data)
        pending.done.wait()
        return pending.reply

    def _read(self) -> None:
        assert self._conn is not None
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                break
            reply: Reply = pickle.loads(data)
            pending = self._pending.popleft()
            pending.reply = reply
            try:
                self.on_reply(pending.request, reply)
            except Exception:
                log.exception("an observer of moto's answers failed")
            pending.done.set()
        with self._send_lock:
            self._exited = True
            while self._pending:
                self._pending.popleft().done.set()  # answered _EXITED

    def stop(self) -> None:
        if self._conn is not None:
            # Shut down, not just closed: the reader thread is blocked reading this socket, and a close alone
            # would leave it open until that read returns. The child sees EOF and exits.
            with socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            self._conn.close()
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(10)


def _process_environ() -> dict[str, str]:
    """The process's own environment, not a Lambda container's view of it (``lambdas.ThreadEnviron``)."""
    environ: Any = os.environ
    return dict(getattr(environ, "base", environ))


def serve(fd: int) -> None:
    """The child: moto with the emulator's changes (``moto_speed``, ``moto_fifo``), one request at a time."""
    from botocore.awsrequest import AWSPreparedRequest
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from local_server.emulator import aws, moto_fifo, moto_speed

    for noisy in ("werkzeug", "botocore", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    moto_speed.install(dynamodb_backends[DEFAULT_ACCOUNT_ID][aws.REGION])
    moto_fifo.install()
    # As the emulator's own process (``server.collect_less``): what the imports built is never garbage, and
    # moto's items, which only grow, are walked rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    conn = Connection(fd)
    conn.send_bytes(b"ready")
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        started = time.thread_time()
        service, method, url, headers, body, operation, sizes_wanted = pickle.loads(data)
        sizes: dict[tuple[str, str], int | None] = {}
        try:
            if sizes_wanted:
                sizes = aws.item_sizes_before(operation, body)
            status, headers_out, response = aws.dispatch(service, AWSPreparedRequest(method, url, headers, body, False))
        except Exception:  # moto's own failure: what its server would answer, and the traceback on stderr
            traceback.print_exc()
            status, headers_out, response = _EXITED[0], _EXITED[1], b'{"message": "moto failed"}'
        reply: Reply = (status, headers_out, response, sizes, time.thread_time() - started)
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    serve(int(sys.argv[1]))
