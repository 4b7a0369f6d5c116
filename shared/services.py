"""The composition root: ``build_services(settings)`` wires drivers into the engine; nothing connects at import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.apps.base import AppStore
from shared.apps.config import ConfigAppStore
from shared.engine.core import Engine
from shared.http_api.router import RestApi
from shared.limits.base import RateLimiter
from shared.limits.memory import MemoryRateLimiter
from shared.metrics.base import Metrics, NullMetrics
from shared.sender.base import Sender
from shared.settings import QueueSettings, Settings, StoreSettings
from shared.store.base import ChannelStore
from shared.webhooks.base import WebhookQueue


class DriverError(RuntimeError):
    """A driver is misconfigured or unavailable at start-up: fail loudly, never fall back to memory."""


def create_store(settings: StoreSettings, **clients: Any) -> ChannelStore:
    if settings.driver == "memory":
        from shared.store.memory import MemoryChannelStore

        return MemoryChannelStore()
    raise DriverError(f"store driver {settings.driver!r} is not available in this build")


def create_queue(settings: QueueSettings, **clients: Any) -> WebhookQueue:
    if settings.driver == "memory":
        from shared.webhooks.memory import MemoryWebhookQueue

        return MemoryWebhookQueue()
    raise DriverError(f"queue driver {settings.driver!r} is not available in this build")


def create_limiter(settings: StoreSettings, **clients: Any) -> RateLimiter:
    return MemoryRateLimiter()


@dataclass
class Services:
    settings: Settings
    apps: AppStore
    store: ChannelStore
    sender: Sender
    queue: WebhookQueue
    limiter: RateLimiter
    metrics: Metrics
    engine: Engine
    rest: RestApi

    async def close(self) -> None:
        for driver in (self.queue, self.sender, self.store, self.limiter, self.apps):
            await driver.close()

    async def health(self) -> dict[str, bool]:
        return {
            name: await driver.check_health()
            for name, driver in (
                ("apps", self.apps),
                ("store", self.store),
                ("sender", self.sender),
                ("queue", self.queue),
                ("limiter", self.limiter),
            )
        }


def build_services(
    settings: Settings,
    *,
    sender: Sender,
    metrics: Metrics | None = None,
    apps: AppStore | None = None,
    store: ChannelStore | None = None,
    queue: WebhookQueue | None = None,
    limiter: RateLimiter | None = None,
    **clients: Any,
) -> Services:
    apps = apps or ConfigAppStore(settings.apps)
    store = store or create_store(settings.store, **clients)
    queue = queue or create_queue(settings.queue, **clients)
    limiter = limiter or create_limiter(settings.store, **clients)
    metrics = metrics or NullMetrics()
    engine = Engine(
        apps=apps,
        store=store,
        sender=sender,
        webhooks=queue,
        limiter=limiter,
        metrics=metrics,
        activity_timeout=settings.activity_timeout,
        cache_ttl_seconds=settings.cache_ttl_seconds,
        max_frame_bytes=settings.max_frame_kb * 1024,
        webhook_delay_seconds=settings.webhooks.delay_seconds,
    )
    rest = RestApi(
        engine, limiter, per_ip=settings.rate_limits.http_per_ip, max_body_bytes=settings.max_http_body_kb * 1024
    )
    return Services(
        settings=settings,
        apps=apps,
        store=store,
        sender=sender,
        queue=queue,
        limiter=limiter,
        metrics=metrics,
        engine=engine,
        rest=rest,
    )
