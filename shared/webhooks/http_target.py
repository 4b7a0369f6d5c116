"""HTTP webhook targets: a POST of the signed body, through an injected client (aiohttp or urllib3)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from shared.settings import WebhookConfig
from shared.webhooks.base import Outcome, classify

# Headers the signature depends on: a target's custom headers can never replace them.
RESERVED_HEADERS = frozenset({"content-type", "x-pusher-key", "x-pusher-signature", "content-length"})


class DeliveryError(Exception):
    """The request did not get an HTTP status back (connection refused or reset, DNS, TLS, timeout)."""


class HttpClient(Protocol):
    """The injected HTTP client: aiohttp on the local server, urllib3 (inside every boto3 bundle) in Lambda."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """POST ``body`` without following redirects; the response status. Raises ``DeliveryError``."""


class HttpWebhookTarget:
    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        if hook.url is None:
            return Outcome(ok=False, retryable=False, detail="not an HTTP webhook")
        merged = {k: v for k, v in hook.headers.items() if k.lower() not in RESERVED_HEADERS}
        merged.update(headers)
        try:
            status = await self.client.post(hook.url, body, merged, timeout)
        except (DeliveryError, OSError, TimeoutError) as exc:
            return Outcome(ok=False, retryable=True, detail=f"network error: {type(exc).__name__}: {exc}"[:300])
        return classify(status)


class AiohttpClient:
    """Posts through the server's shared ``aiohttp.ClientSession`` (its connection pool is reused)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        import aiohttp

        try:
            async with self.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                return int(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(str(exc) or type(exc).__name__) from exc


class Urllib3Client:
    """For Lambda, where aiohttp is not bundled: urllib3 calls run in a worker thread, off the event loop."""

    def __init__(self, pool: Any | None = None) -> None:
        import urllib3

        self.pool = pool if pool is not None else urllib3.PoolManager(retries=False)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        import urllib3

        def call() -> int:
            response = self.pool.request(
                "POST", url, body=body, headers=dict(headers), timeout=timeout, redirect=False, retries=False
            )
            return int(response.status)

        try:
            return await asyncio.to_thread(call)
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(str(exc)) from exc
