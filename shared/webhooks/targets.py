"""The ``WebhookTarget`` protocol (HTTP URL or AWS Lambda function), delivery outcomes, and target selection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.settings import WebhookConfig

# Besides 5xx, the statuses that mean "try again later" (Sockudo's list, PROTOCOL.md §4.2).
RETRY_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt achieved: ``ok``, or failed and worth retrying (or not)."""

    ok: bool
    retryable: bool
    detail: str = ""


def classify(status: int) -> Outcome:
    """Any 2xx acknowledges (Pusher's rule); 5xx and ``RETRY_STATUSES`` are retried; the rest (3xx
    included: a webhook is never redirected, its signature covers one exact body) are final."""
    if 200 <= status < 300:
        return Outcome(ok=True, retryable=False, detail=f"HTTP {status}")
    return Outcome(ok=False, retryable=status >= 500 or status in RETRY_STATUSES, detail=f"HTTP {status}")


class WebhookTarget(Protocol):
    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        """Deliver one signed body to ``hook`` within ``timeout`` seconds. Never raises: network errors and
        timeouts are retryable outcomes, so a broken receiver can only cost its own retries."""


class Targets:
    """Picks the target implementation for a webhook config; ``None`` when this build has none for it."""

    def __init__(self, http: WebhookTarget | None, lambda_: WebhookTarget | None) -> None:
        self.http = http
        self.lambda_ = lambda_

    def for_hook(self, hook: WebhookConfig) -> WebhookTarget | None:
        return self.http if hook.url is not None else self.lambda_


def create_targets(
    *,
    http: Any | None = None,
    http_client: Any | None = None,
    lambda_factory: Callable[[str, float], Any] | None = None,
) -> Targets:
    """HTTP through an aiohttp session (``http``, the local server) or any ``HttpClient`` (``http_client``,
    e.g. ``Urllib3Client`` in Lambda); Lambda functions through boto3, imported only when first invoked."""
    from shared.webhooks.http_target import AiohttpClient, HttpWebhookTarget
    from shared.webhooks.lambda_target import LambdaWebhookTarget

    client = http_client if http_client is not None else AiohttpClient(http) if http is not None else None
    return Targets(
        HttpWebhookTarget(client) if client is not None else None,
        LambdaWebhookTarget(lambda_factory) if lambda_factory is not None else LambdaWebhookTarget(),
    )
