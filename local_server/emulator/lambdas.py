"""The Lambda service of the emulator: named functions run in worker threads, one warm "container" each.

A worker thread plays a Lambda container: the handler modules keep their per-container state (settings,
event loop, boto3 clients) per thread, so concurrent invocations never share a loop, and a second
invocation on the same thread is a warm start, as on AWS. Handlers are imported lazily, by path, the way
the Lambda runtime resolves ``module.function``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from local_server.emulator.events import ACCOUNT_ID

log = logging.getLogger("sockless.emulator")

Handler = Callable[[Any, Any], Any]

# The functions a deployment has, by handler path (CDK uses the same entry points).
HANDLERS: dict[str, str] = {
    "connect": "functions.connect.handler.handler",
    "disconnect": "functions.disconnect.handler.handler",
    "welcome": "functions.welcome.handler.handler",
    "message": "functions.message.handler.handler",
    "fanout": "functions.fanout.handler.handler",
    "http_api": "functions.http_api.handler.handler",
    "webhooks": "functions.webhooks.handler.handler",
    "sweep": "functions.sweep.handler.handler",
}


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    region: str
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"emulator/{threading.current_thread().name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000), 0)


class FunctionError(Exception):
    """The handler raised: what Lambda reports as ``X-Amz-Function-Error: Unhandled``."""

    def __init__(self, error_type: str, message: str, trace: list[str]) -> None:
        super().__init__(f"{error_type}: {message}")
        self.payload = {"errorMessage": message, "errorType": error_type, "stackTrace": trace}


@dataclass
class Stats:
    invocations: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)  # billed duration (GB-s = this x memory)


class LambdaService:
    """Named functions (``{prefix}-{kind}``), invoked synchronously or as events on worker threads."""

    def __init__(self, *, prefix: str, region: str, concurrency: int = 8) -> None:
        self.prefix = prefix
        self.region = region
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lambda")
        self._handlers: dict[str, Handler] = {}
        self._paths = {self.name(kind): path for kind, path in HANDLERS.items()}
        self._lock = threading.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        self.stats = Stats()
        # Told of every invocation (function name, wall time in ms, error type or None), on the worker
        # thread that ran it: the debug console's Lambda rows (local_server/debug/emulator.py).
        self.observer: Callable[[str, float, str | None], None] | None = None

    def name(self, kind: str) -> str:
        return f"{self.prefix}-{kind}"

    def register(self, function_name: str, handler_path: str) -> None:
        """Add a function (e.g. a customer's webhook Lambda) by ``module.attribute`` path."""
        self._paths[function_name] = handler_path

    def exists(self, function_name: str) -> bool:
        return self._resolve_name(function_name) in self._paths

    @staticmethod
    def _resolve_name(name: str) -> str:
        # FunctionName may be a name, a partial or full ARN, each with an optional :qualifier.
        if name.startswith("arn:"):
            parts = name.split(":")
            return parts[6] if len(parts) > 6 else name
        return name.split(":")[0]

    def _handler(self, function_name: str) -> Handler:
        with self._lock:
            handler = self._handlers.get(function_name)
            if handler is None:
                module_name, _, attr = self._paths[function_name].rpartition(".")
                handler = getattr(importlib.import_module(module_name), attr)
                self._handlers[function_name] = handler
            return handler

    def _run(self, function_name: str, event: Any) -> Any:
        """Runs on a worker thread: one invocation, exactly as the Lambda runtime would call the handler."""
        context = LambdaContext(function_name=function_name, region=self.region)
        cpu = time.thread_time()
        error: str | None = None
        try:
            # An import error is the function's failure too (Runtime.ImportModuleError on AWS).
            return self._handler(function_name)(event, context)
        except Exception as exc:
            error = type(exc).__name__
            with self._lock:
                self.stats.errors[function_name] = self.stats.errors.get(function_name, 0) + 1
            log.exception("function %s failed", function_name)
            raise FunctionError(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__)) from exc
        finally:
            with self._lock:
                self.stats.invocations[function_name] = self.stats.invocations.get(function_name, 0) + 1
                spent = time.thread_time() - cpu
                self.stats.cpu_seconds[function_name] = self.stats.cpu_seconds.get(function_name, 0.0) + spent
                wall = time.monotonic() - context.started
                self.stats.wall_seconds[function_name] = self.stats.wall_seconds.get(function_name, 0.0) + wall
            if self.observer is not None:
                self.observer(function_name, (time.monotonic() - context.started) * 1000, error)

    async def invoke(self, function_name: str, event: Any) -> Any:
        """``RequestResponse``: wait for the result; raises ``FunctionError`` or ``KeyError`` (no such function)."""
        name = self._resolve_name(function_name)
        if name not in self._paths:
            raise KeyError(function_name)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._run, name, event)
        self._pending.add(future)
        try:
            return await future
        finally:
            self._pending.discard(future)

    def invoke_event(self, function_name: str, event: Any) -> None:
        """``Event``: queue the invocation and return at once; failures are logged (Lambda would retry
        twice, minutes later, which no handler here relies on)."""
        name = self._resolve_name(function_name)
        if name not in self._paths:
            raise KeyError(function_name)
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._run, name, event)
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: already logged by _run

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight invocations (they may start others) for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.wait(set(self._pending), timeout=max(deadline - time.monotonic(), 0.01))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
