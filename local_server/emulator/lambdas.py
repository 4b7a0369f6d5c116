"""The Lambda service of the emulator: the template's functions, each with its own containers.

A container is a worker thread of the function's own pool (at most its reserved concurrency, else the
``concurrency`` option), so it only ever runs that one function, as on AWS: the handler modules keep their
per-container state (settings, event loop, boto3 clients) per thread, and a second invocation on the same
thread is a warm start. Each container sees its function's environment and nothing else: ``os.environ`` is
replaced by ``ThreadEnviron``, which gives every Lambda thread the variables the template sets for its
function plus what the Lambda runtime adds (region, function name, memory, and credentials of the
function's own: the emulator's IAM check, ``iam.py``, knows the caller by its access key id). Service
endpoints reach the handlers through ``AWS_ENDPOINT_URL_<SERVICE>``, which botocore reads when a client is
built without ``endpoint_url``: the handlers' code is the code that runs on AWS.

Asynchronous invocations follow the function's ``EventInvokeConfig`` (retries, maximum event age,
on-failure destination); an optional queueing delay and cold-start time imitate Lambda's timings.
``Invocation`` is the one place every invocation passes through (``LambdaService.observers``: the debug
console, a billing meter).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from local_server.emulator.template import ACCOUNT_ID, AsyncConfig, Function

log = logging.getLogger("sockless.emulator")

Handler = Callable[[Any, Any], Any]


class ThreadEnviron(MutableMapping[str, str]):
    """``os.environ`` with a per-container view: a Lambda container thread sees its function's variables
    only; every other thread (the emulator, moto) sees the process environment.

    The binding is a context variable, not a thread-local: a handler's ``asyncio.to_thread`` (the fan-out
    offload, the sweep's ``GetConnection``, the frames queue's pongs) runs in a thread of the default executor
    with a copy of the container's context, so it sees the container's environment as it would on AWS, where
    the environment is the process's. (Work a handler hands to its own executor with ``run_in_executor`` does
    not carry the context: it sees the process environment.)"""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base
        self._binding: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("environ", default=None)

    def _env(self) -> MutableMapping[str, str]:
        env = self._binding.get()
        return self.base if env is None else env

    def bind(self, env: dict[str, str] | None) -> None:
        """Make ``env`` this thread's environment (a container's, for the rest of its life: set in the
        container thread's own context, which its invocations run in); None: the process environment."""
        self._binding.set(env)

    def bound(self) -> dict[str, str] | None:
        return self._binding.get()

    def __getitem__(self, key: str) -> str:
        return self._env()[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._env()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._env()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._env()))

    def __len__(self) -> int:
        return len(self._env())

    def copy(self) -> dict[str, str]:
        return dict(self._env())


@contextlib.contextmanager
def process_environment() -> Iterator[None]:
    """Let the current thread see the process environment for a while: what the emulator's own code does on
    a container's thread (moto, called in-process from a handler's boto3 client) is not the function's."""
    environ = os.environ
    if not isinstance(environ, ThreadEnviron):
        yield
        return
    env = environ.bound()
    environ.bind(None)
    try:
        yield
    finally:
        environ.bind(env)


def install_thread_environ() -> ThreadEnviron:
    """Replace ``os.environ`` (once per process) so Lambda containers can each have their own, and make
    boto3's default session (``boto3.client(...)``) per container too: it caches the credentials it found
    first, and a container must sign as its own function, never as the one whose thread built it."""
    if not isinstance(os.environ, ThreadEnviron):
        environ = ThreadEnviron(os.environ)
        os.environ = environ  # type: ignore[assignment]  # noqa: B003  (a view, not a reset)
        import boto3

        process = threading.local()
        # By container environment; the environment is kept with its session so its id is never reused.
        sessions: dict[int, tuple[dict[str, str], Any]] = {}
        lock = threading.Lock()

        def default_session() -> Any:
            env = environ.bound()
            if env is None:
                session = getattr(process, "session", None)
                if session is None:
                    session = process.session = boto3.session.Session()
                return session
            with lock:
                if id(env) not in sessions:
                    sessions[id(env)] = (env, boto3.session.Session())
                return sessions[id(env)][1]

        boto3._get_default_session = default_session
    return os.environ  # type: ignore[return-value]


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
    """The handler raised (or timed out): what Lambda reports as ``X-Amz-Function-Error: Unhandled``."""

    def __init__(self, error_type: str, message: str, trace: list[str]) -> None:
        super().__init__(f"{error_type}: {message}")
        self.payload = {"errorMessage": message, "errorType": error_type, "stackTrace": trace}


@dataclass(frozen=True)
class Invocation:
    """One finished invocation, as observers see it (on the container's thread)."""

    function: str
    memory_mb: int
    wall_ms: float  # billed duration
    cpu_ms: float
    error: str | None
    cold: bool
    kind: str  # "RequestResponse" or "Event"
    init_ms: float = 0.0  # a cold start's INIT (billed since 2025-08-01): the function's measured one
    platform_logs: bool = True  # Lambda writes START/END/REPORT lines for it (system log level INFO)


@dataclass
class Stats:
    invocations: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)  # billed duration (GB-s = this x memory)
    dropped_events: dict[str, int] = field(default_factory=dict)  # async events past their maximum age
    cold_starts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Timings:
    """Lambda timings the emulator can imitate (all 0 by default: fast tests)."""

    cold_start: float = 0.0  # seconds a new container spends before its first invocation
    async_delay: float = 0.0  # seconds an Event invocation waits in Lambda's queue
    retry_delays: tuple[float, ...] = (1.0, 2.0)  # between async retries (AWS: ~1 and ~2 minutes)


_IMPORT_LOCK = threading.RLock()


class _Container(threading.local):
    cold: bool = True


class _Running(threading.local):
    function: str | None = None  # the function whose invocation runs on this thread


_RUNNING = _Running()


class FunctionLogs:
    """``sys.stdout`` with each write of a running function counted for it: what CloudWatch Logs ingests
    from a Lambda function is what it prints (Powertools' log lines, EMF documents). Everything is passed
    on unchanged."""

    def __init__(self, target: Any, observers: list[Callable[[str, int], None]]) -> None:
        self.target = target
        self.observers = observers

    def write(self, text: str) -> int:
        function = _RUNNING.function
        if function is not None and text:
            size = len(text.encode(errors="replace"))
            for observer in self.observers:
                observer(function, size)
        written: int = self.target.write(text)
        return written

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the target's own
        return getattr(self.target, name)


class FunctionRuntime:
    """One function: its configuration, its environment and its pool of containers."""

    def __init__(self, config: Function, env: dict[str, str], concurrency: int, timings: Timings) -> None:
        self.config = config
        self.env = env
        self.timings = timings
        workers = min(config.reserved_concurrency or concurrency, concurrency)
        self.pool = ThreadPoolExecutor(
            max_workers=max(workers, 1), thread_name_prefix=config.name.rsplit("-", 1)[-1], initializer=self._init
        )
        self._handler: Handler | None = None
        self._container = _Container()
        # The INIT of a container (imports, module-scope state, the imitated cold start), measured the first
        # time one is built: every later cold start is billed as much on AWS (imports are per container there).
        self.init_seconds: float | None = None

    def _init(self) -> None:
        """A new container: its environment, then the cold start's init time."""
        environ = os.environ
        if isinstance(environ, ThreadEnviron):
            environ.bind(dict(self.env))
        if self.timings.cold_start > 0:
            time.sleep(self.timings.cold_start)

    def handler(self) -> Handler:
        # One lock for every function: two threads importing interdependent modules at once can see a
        # partially initialized module (ImportError from a circular import) — Python imports once per process.
        with _IMPORT_LOCK:
            if self._handler is None:
                module_name, _, attr = self.config.handler.rpartition(".")
                self._handler = getattr(importlib.import_module(module_name), attr)
            return self._handler

    def warm(self) -> None:
        """On a container thread: import the handler and, for the project's functions, build the
        container's state (``functions.runtime``) as the first invocation would."""
        started = time.monotonic()
        self.handler()
        if self.config.handler.startswith("functions."):
            from functions import runtime

            runtime.container().services  # noqa: B018  (built on first access)
        if self.init_seconds is None:
            self.init_seconds = time.monotonic() - started


class LambdaService:
    """The functions of the deployment, invoked synchronously or as events."""

    def __init__(self, *, region: str, concurrency: int = 8, timings: Timings | None = None) -> None:
        self.region = region
        self.concurrency = concurrency
        self.timings = timings or Timings()
        self.functions: dict[str, FunctionRuntime] = {}
        self._lock = threading.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = Stats()
        # Told of every invocation, on the worker thread that ran it (the debug console's Lambda rows, a
        # billing meter). ``observer`` is the debug console's (function, wall ms, error).
        self.observers: list[Callable[[Invocation], None]] = []
        # Told of what the functions print, (function, bytes), once ``capture_logs`` installed the tap.
        self.log_observers: list[Callable[[str, int], None]] = []
        self.observer: Callable[[str, float, str | None], None] | None = None
        # Where an async invocation's on-failure destination goes (set by the emulator: SQS or Lambda).
        self.destination: Callable[[str, dict[str, Any]], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def capture_logs(self) -> Callable[[], None]:
        """Count what the functions print (``log_observers``) from now on; returns what undoes it."""
        import sys

        previous = sys.stdout
        sys.stdout = FunctionLogs(previous, self.log_observers)

        def restore() -> None:
            sys.stdout = previous

        return restore

    def add(self, config: Function, env: dict[str, str]) -> None:
        self.functions[config.name] = FunctionRuntime(config, env, self.concurrency, self.timings)

    def register(self, function_name: str, handler_path: str, env: dict[str, str] | None = None) -> None:
        """Add a function outside the stack (e.g. a customer's webhook Lambda) by ``module.attribute`` path;
        it sees the emulator's own environment unless ``env`` is given."""
        config = Function(
            logical_id=function_name,
            name=function_name,
            arn=f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{function_name}",
            handler=handler_path,
            environment={},
            memory_mb=128,
            timeout_seconds=30.0,
            reserved_concurrency=None,
            role="",
            asynchronous=AsyncConfig(),
        )
        self.functions[function_name] = FunctionRuntime(
            config, env if env is not None else dict(os.environ), self.concurrency, self.timings
        )

    async def preload(self) -> None:
        """Start one container of each function now (its environment bound, its handler imported, its
        services built), so no client's first frame waits for a cold start: API Gateway's idle timeout and
        the handlers' retry windows are counted in tens of milliseconds, a cold container here takes seconds
        on a busy machine. Skipped when cold starts are imitated (``Timings.cold_start``)."""
        if self.timings.cold_start > 0:
            return
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(f.pool, f.warm) for f in self.functions.values()), return_exceptions=True
        )
        for function, result in zip(self.functions.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.error("cannot import %s: %s; its invocations will fail", function.config.handler, result)

    def exists(self, function_name: str) -> bool:
        return self.resolve_name(function_name) in self.functions

    @staticmethod
    def resolve_name(name: str) -> str:
        # FunctionName may be a name, a partial or full ARN, each with an optional :qualifier.
        if name.startswith("arn:"):
            parts = name.split(":")
            return parts[6] if len(parts) > 6 else name
        return name.split(":")[0]

    def _run(self, function: FunctionRuntime, event: Any, kind: str) -> Any:
        """Runs on a container thread: one invocation, exactly as the Lambda runtime calls the handler."""
        config = function.config
        container = function._container
        cold, container.cold = container.cold, False
        context = LambdaContext(
            function_name=config.name,
            region=self.region,
            memory_limit_in_mb=config.memory_mb,
            timeout_seconds=config.timeout_seconds,
        )
        if cold:  # counted as the invocation starts: its INIT is over before the handler can answer anyone
            with self._lock:
                self.stats.cold_starts[config.name] = self.stats.cold_starts.get(config.name, 0) + 1
        cpu = time.thread_time()
        error: str | None = None
        _RUNNING.function = config.name
        try:
            # An import error is the function's failure too (Runtime.ImportModuleError on AWS).
            result = function.handler()(event, context)
            elapsed = time.monotonic() - context.started
            if elapsed > config.timeout_seconds:
                # Lambda would have stopped the handler; the emulator cannot stop a thread, so the result
                # is dropped and the caller sees the timeout, as on AWS.
                error = "Sandbox.Timedout"
                raise FunctionError(error, f"Task timed out after {config.timeout_seconds:.2f} seconds", [])
            return result
        except FunctionError:
            raise
        except Exception as exc:
            error = type(exc).__name__
            log.exception("function %s failed", config.name)
            raise FunctionError(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__)) from exc
        finally:
            _RUNNING.function = None
            wall = time.monotonic() - context.started
            spent = time.thread_time() - cpu
            with self._lock:
                s = self.stats
                s.invocations[config.name] = s.invocations.get(config.name, 0) + 1
                s.cpu_seconds[config.name] = s.cpu_seconds.get(config.name, 0.0) + spent
                s.wall_seconds[config.name] = s.wall_seconds.get(config.name, 0.0) + wall
                if error is not None:
                    s.errors[config.name] = s.errors.get(config.name, 0) + 1
            init = ((function.init_seconds or 0.0) + self.timings.cold_start) * 1000 if cold else 0.0
            invocation = Invocation(
                config.name,
                config.memory_mb,
                wall * 1000,
                spent * 1000,
                error,
                cold,
                kind,
                init_ms=init,
                platform_logs=config.system_log_level.upper() not in ("WARN", "ERROR", "FATAL"),
            )
            for observer in self.observers:
                observer(invocation)
            if self.observer is not None:
                self.observer(config.name, wall * 1000, error)

    def _function(self, function_name: str) -> FunctionRuntime:
        function = self.functions.get(self.resolve_name(function_name))
        if function is None:
            raise KeyError(function_name)
        return function

    async def invoke(self, function_name: str, event: Any) -> Any:
        """``RequestResponse``: wait for the result; raises ``FunctionError`` or ``KeyError`` (no such function)."""
        function = self._function(function_name)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(function.pool, self._run, function, event, "RequestResponse")
        self._pending.add(future)
        try:
            return await future
        finally:
            self._pending.discard(future)

    def invoke_event(self, function_name: str, event: Any) -> None:
        """``Event``: queue the invocation and return at once (the caller got 202). Lambda's queue delay,
        retries and maximum event age are the function's ``EventInvokeConfig``; an event that fails for
        good goes to the on-failure destination when there is one."""
        function = self._function(function_name)
        task = asyncio.get_running_loop().create_task(self._event(function, event, time.monotonic()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _event(self, function: FunctionRuntime, event: Any, queued: float) -> None:
        config = function.config.asynchronous
        if self.timings.async_delay > 0:
            await asyncio.sleep(self.timings.async_delay)
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            # Waiting for a free container is Lambda's throttled queue: past the maximum age, it is dropped.
            future = loop.run_in_executor(function.pool, self._aged, function, event, queued, config.max_event_age)
            self._pending.add(future)
            try:
                await future
                return
            except _Expired:
                with self._lock:
                    name = function.config.name
                    self.stats.dropped_events[name] = self.stats.dropped_events.get(name, 0) + 1
                log.warning("event for %s dropped: older than %.0f s", function.config.name, config.max_event_age)
                self._failed(function, event, "EventAgeExceeded")
                return
            except FunctionError as exc:
                if attempt >= config.max_retries:
                    self._failed(function, event, str(exc.payload.get("errorType")))
                    return
                delay = self.timings.retry_delays[min(attempt, len(self.timings.retry_delays) - 1)]
                attempt += 1
                await asyncio.sleep(delay)
            finally:
                self._pending.discard(future)

    def _aged(self, function: FunctionRuntime, event: Any, queued: float, max_age: float) -> Any:
        if time.monotonic() - queued > max_age:
            raise _Expired
        return self._run(function, event, "Event")

    def _failed(self, function: FunctionRuntime, event: Any, condition: str) -> None:
        destination = function.config.asynchronous.on_failure
        if destination is None or self.destination is None:
            return
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function.config.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": 1,
            },
            "requestPayload": event,
        }
        try:
            self.destination(destination, json.loads(json.dumps(record, default=str)))
        except Exception:
            log.exception("on-failure destination %s of %s failed", destination, function.config.name)

    def in_flight(self) -> int:
        """Invocations running or waiting (async events included)."""
        return len(self._pending) + len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight invocations (they may start others) for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._tasks) and time.monotonic() < deadline:
            waiting: set[Any] = set(self._pending) | set(self._tasks)
            await asyncio.wait(waiting, timeout=max(deadline - time.monotonic(), 0.01))

    def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for function in self.functions.values():
            function.pool.shutdown(wait=False, cancel_futures=True)


class _Expired(Exception):
    """An async event waited longer than its function's maximum event age."""
