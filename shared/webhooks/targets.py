"""Webhook targets: HTTP URLs and AWS Lambda functions, behind one ``WebhookTarget`` protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.settings import WebhookConfig

RETRY_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retryable: bool
    detail: str = ""


class HttpClient(Protocol):
    """The injected HTTP client (aiohttp in the local server, urllib3 in Lambda)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int: ...


class WebhookTarget(Protocol):
    async def deliver(
        self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Outcome: ...


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(ok=True, retryable=False, detail=str(status))
    return Outcome(ok=False, retryable=status >= 500 or status in RETRY_STATUSES, detail=f"HTTP {status}")


class HttpWebhookTarget:
    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        assert hook.url is not None
        try:
            status = await self.client.post(hook.url, body, {**hook.headers, **headers}, timeout)
        except (OSError, TimeoutError) as exc:
            return Outcome(ok=False, retryable=True, detail=f"network error: {type(exc).__name__}")
        return classify(status)


class LambdaWebhookTarget:
    """Invokes the function asynchronously (``InvocationType=Event``) with the Pusher webhook body, like
    Sockudo's Lambda sender. boto3 clients are made per region on first use, never at import."""

    def __init__(self, client_factory: Callable[[str], Any]) -> None:
        self._factory = client_factory
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = self._factory(region)
        return client

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        target = hook.lambda_target
        assert target is not None
        client = self._client(target.region)
        try:
            response = await asyncio.to_thread(
                client.invoke, FunctionName=target.function_name, InvocationType="Event", Payload=body
            )
        except Exception as exc:  # botocore raises many types; all mean "try again later" here
            return Outcome(ok=False, retryable=True, detail=f"lambda error: {type(exc).__name__}")
        status = int(response.get("StatusCode", 0))
        return classify(status)


class Targets:
    """Picks the target implementation for a webhook config."""

    def __init__(self, http: WebhookTarget | None, lambda_: WebhookTarget | None) -> None:
        self.http = http
        self.lambda_ = lambda_

    def for_hook(self, hook: WebhookConfig) -> WebhookTarget | None:
        return self.http if hook.url is not None else self.lambda_


class AiohttpClient:
    def __init__(self, session: Any) -> None:
        self.session = session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        import aiohttp

        async with self.session.post(
            url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            await response.read()
            return int(response.status)


def _boto3_lambda(region: str) -> Any:
    import boto3

    return boto3.client("lambda", region_name=region)


def create_targets(
    *,
    http: Any | None = None,
    http_client: HttpClient | None = None,
    lambda_factory: Callable[[str], Any] = _boto3_lambda,
) -> Targets:
    client = http_client or (AiohttpClient(http) if http is not None else None)
    return Targets(HttpWebhookTarget(client) if client is not None else None, LambdaWebhookTarget(lambda_factory))
