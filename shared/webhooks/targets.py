"""``create_targets``: the targets this build can deliver to (HTTP URLs, AWS Lambda functions), picked per hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.settings import WebhookConfig
from shared.webhooks.base import WebhookTarget


class Targets:
    """A ``TargetPicker``: the HTTP target for URL hooks, the Lambda target for function hooks."""

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
