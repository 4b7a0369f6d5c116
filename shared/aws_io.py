"""boto3 calls off the event loop: a lazily built client and a bounded thread pool per AWS driver.

The core is async (docs/architecture.md#composition-one-place-per-runtime): boto3 is synchronous but its
clients are thread-safe, so every AWS driver runs its calls in a small thread pool and awaits them;
concurrency (fan-out posts) is bounded by the pool. Clients are injected (tests hand in moto's) or built on
first use, never at import, and the build itself runs in the pool because it costs 30-80 ms (docs/sources.md#tooling).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import StoreUnavailable

T = TypeVar("T")

# Errors AWS uses for "slow down" across services (API Gateway answers 429 LimitExceededException).
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
    }
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES or http_status(exc) == 429


def unavailable(exc: BaseException, action: str) -> StoreUnavailable:
    """The project's own error for any AWS failure a driver does not turn into a decision."""
    reason = error_code(exc) or type(exc).__name__
    return StoreUnavailable(f"{action} failed: {reason}: {exc}")


AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)


class AwsCaller:
    """One boto3 client (injected or built lazily) and the bounded pool its calls run in.

    ``client_config`` is a dict of ``botocore.config.Config`` arguments used only when the client is
    built here; an injected client keeps its own configuration.
    """

    def __init__(
        self,
        service: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_workers: int = 16,
        executor: Executor | None = None,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self._client = client
        self._owns_client = client is None
        self._region = region
        self._endpoint_url = endpoint_url
        self._max_workers = max_workers
        self._executor = executor
        self._owns_executor = executor is None
        self._client_config = client_config or {}
        self._lock = threading.Lock()

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def client(self) -> Any:
        """The boto3 client, built on first use (thread-safe); call from a pool thread, it may block."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    config = Config(max_pool_connections=self._max_workers, **self._client_config)
                    session = boto3.session.Session(region_name=self._region)
                    self._client = session.client(self.service, endpoint_url=self._endpoint_url, config=config)
        return self._client

    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix=self.service)
        return self._executor

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a blocking callable in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor(), fn)

    async def call(self, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        """``await caller.call("put_item", ...)``: the raw boto3 call; AWS errors propagate unchanged."""

        def invoke() -> dict[str, Any]:
            result: dict[str, Any] = getattr(self.client(), operation)(**kwargs)
            return result

        return await self.run(invoke)

    async def close(self) -> None:
        """Shut down what this caller built; injected clients and executors belong to the caller."""
        if self._owns_executor and self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, functools.partial(executor.shutdown, wait=True))
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            client.close()
