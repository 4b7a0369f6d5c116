"""AWS Lambda webhook targets: an asynchronous ``Invoke`` (``InvocationType=Event``) with the Pusher body.

Sockudo's ``lambda`` target (docs/sources.md#webhooks): the function receives ``{time_ms, events}`` as its event.
Lambda acknowledges with 202 once the event is queued; the function's own errors are Lambda's retries,
not ours. boto3 is imported and clients are built on first use (per region), never at import.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.settings import WebhookConfig
from shared.webhooks.base import Outcome, classify

LambdaClientFactory = Callable[[str, float], Any]  # (region, timeout seconds) -> boto3 Lambda client


def boto3_lambda_client(region: str, timeout: float) -> Any:
    """One attempt per call: the dispatcher owns retries (with its backoff and 5-minute window)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1})
    return boto3.client("lambda", region_name=region, config=config)


def _client_error_status(exc: Exception) -> int | None:
    """The HTTP status of a botocore ``ClientError`` (duck-typed: botocore is not imported here)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


class LambdaWebhookTarget:
    def __init__(self, client_factory: LambdaClientFactory = boto3_lambda_client, max_threads: int = 16) -> None:
        self._factory = client_factory
        self._clients: dict[tuple[str, float], Any] = {}
        self._max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        """Threads of its own, so invocations never wait behind unrelated work in the loop's default pool."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._max_threads, thread_name_prefix="webhook-lambda")
        return self._pool

    def _client(self, region: str, timeout: float) -> Any:
        client = self._clients.get((region, timeout))
        if client is None:
            client = self._clients[(region, timeout)] = self._factory(region, timeout)
        return client

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        target = hook.lambda_target
        if target is None:
            return Outcome(ok=False, retryable=False, detail="not a Lambda webhook")
        try:
            client = self._client(target.region, timeout)
        except ImportError as exc:
            return Outcome(ok=False, retryable=False, detail=f"Lambda webhooks need boto3 (the 'aws' extra): {exc}")
        invoke = functools.partial(
            client.invoke, FunctionName=target.function_name, InvocationType="Event", Payload=body
        )
        try:
            # boto3 clients are thread-safe; the call runs off the loop so other deliveries go on meanwhile.
            # No asyncio timeout around it: the client's own connect/read timeouts bound the call, and an
            # abandoned thread would still invoke the function after its retry did (a duplicate).
            response = await asyncio.get_running_loop().run_in_executor(self._executor(), invoke)
        except Exception as exc:  # botocore raises many types: ClientError carries a status, the rest are network
            status = _client_error_status(exc)
            if status is not None:
                outcome = classify(status)
                return Outcome(ok=False, retryable=outcome.retryable, detail=f"Lambda {type(exc).__name__}: {exc}")
            return Outcome(ok=False, retryable=True, detail=f"Lambda error: {type(exc).__name__}: {exc}"[:300])
        return classify(int(response.get("StatusCode", 0)))
