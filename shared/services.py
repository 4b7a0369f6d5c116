"""The composition root: ``build_services(settings)`` wires drivers into the engine; nothing connects at import."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.apps.base import AppStore
from shared.apps.config import ConfigAppStore
from shared.debug.tap import DebugTap, TapMetrics
from shared.engine.core import Engine
from shared.engine.observer import NULL_OBSERVER
from shared.http_api.router import RestApi
from shared.limits.base import RateLimiter
from shared.limits.memory import MemoryRateLimiter
from shared.metrics.base import Metrics, NullMetrics
from shared.sender.base import Sender
from shared.settings import AwsSettings, QueueSettings, Settings, StoreSettings
from shared.store.base import ChannelStore
from shared.webhooks.base import WebhookQueue

if TYPE_CHECKING:
    from redis.asyncio import Redis


class DriverError(RuntimeError):
    """A driver is misconfigured or unavailable at start-up: fail loudly, never fall back to memory."""


@dataclass(frozen=True, slots=True)
class Clients:
    """The network clients the drivers may share, injected: tests hand in real Redis or moto clients, the
    Lambda container its cached boto3 clients, a cluster node its Redis client. A driver whose client is
    missing builds its own from the settings, and closes it with itself."""

    redis: Redis | None = None
    dynamodb: Any | None = None  # boto3 clients are untyped
    sqs: Any | None = None


NO_CLIENTS = Clients()


def _redis_client(url: str | None, cluster_mode: bool, clients: Clients, field: str) -> tuple[Redis, bool]:
    """The injected client (not owned), else a new one for ``url`` (owned: the driver closes it)."""
    if clients.redis is not None:
        return clients.redis, False
    if not url:
        raise DriverError(f"{field} is required by the redis driver")
    from shared.redis.client import connect_redis

    return connect_redis(url, cluster_mode=cluster_mode), True


def create_store(
    settings: StoreSettings, clients: Clients = NO_CLIENTS, aws: AwsSettings | None = None
) -> ChannelStore:
    """``aws``: the Lambda deployment's connection lifetime and sweep granularity (the DynamoDB store's
    liveness index); their defaults elsewhere."""
    if settings.driver == "memory":
        from shared.store.memory import MemoryChannelStore

        return MemoryChannelStore()
    if settings.driver == "redis":
        from shared.store.redis import RedisChannelStore

        client, owned = _redis_client(settings.url, settings.cluster_mode, clients, "store.url")
        return RedisChannelStore(
            client,
            prefix=settings.prefix,
            ttl_seconds=settings.ttl_seconds,
            owns_client=owned,
        )
    if settings.driver == "dynamodb":
        from shared.store.dynamodb import DynamoDBChannelStore

        aws = aws or AwsSettings()
        return DynamoDBChannelStore(
            _table_name(settings),
            client=clients.dynamodb,
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            max_connection_seconds=aws.max_connection_seconds,
            sweep_cycle_seconds=aws.stale_after_seconds,
        )
    raise DriverError(f"store driver {settings.driver!r} is not available in this build")


def _table_name(settings: StoreSettings) -> str:
    if not settings.table_name:
        raise DriverError("store.table_name is required by the dynamodb driver")
    return settings.table_name


def create_queue(settings: QueueSettings, clients: Clients = NO_CLIENTS) -> WebhookQueue:
    if settings.driver == "memory":
        from shared.webhooks.memory import MemoryWebhookQueue

        return MemoryWebhookQueue(visibility_timeout=settings.visibility_timeout_seconds)
    if settings.driver == "redis":
        from shared.webhooks.redis import RedisWebhookQueue

        client, owned = _redis_client(settings.url, settings.cluster_mode, clients, "queue.url")
        return RedisWebhookQueue(
            client, prefix=settings.prefix, visibility_timeout=settings.visibility_timeout_seconds, owns_client=owned
        )
    if settings.driver == "sqs":
        from shared.webhooks.sqs import SqsWebhookQueue

        if not settings.queue_url:
            raise DriverError("queue.queue_url is required by the sqs driver")
        return SqsWebhookQueue(
            settings.queue_url, client=clients.sqs, region=settings.region, endpoint_url=settings.endpoint_url
        )
    raise DriverError(f"queue driver {settings.driver!r} is not available in this build")


def create_limiter(settings: StoreSettings, clients: Clients = NO_CLIENTS) -> RateLimiter:
    """The limiter follows the store: counters shared by every process that shares the store."""
    if settings.driver == "redis":
        from shared.limits.redis import RedisRateLimiter

        client, owned = _redis_client(settings.url, settings.cluster_mode, clients, "store.url")
        return RedisRateLimiter(client, prefix=settings.prefix, owns_client=owned)
    if settings.driver == "dynamodb":
        from shared.limits.dynamodb import DynamoDBRateLimiter

        return DynamoDBRateLimiter(
            _table_name(settings),
            client=clients.dynamodb,
            region=settings.region,
            endpoint_url=settings.endpoint_url,
        )
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
    tap: DebugTap | None = None  # the debug console's, when it is on

    async def close(self) -> None:
        for driver in (self.queue, self.sender, self.store, self.limiter, self.apps):
            await driver.close()

    async def health(self) -> dict[str, bool]:
        # Concurrently: an unreachable backend costs one timeout, not one per driver that shares it.
        drivers = (
            ("apps", self.apps),
            ("store", self.store),
            ("sender", self.sender),
            ("queue", self.queue),
            ("limiter", self.limiter),
        )
        results = await asyncio.gather(*(driver.check_health() for _, driver in drivers), return_exceptions=True)
        return {name: result is True for (name, _), result in zip(drivers, results, strict=True)}


def build_services(
    settings: Settings,
    *,
    sender: Sender,
    clients: Clients = NO_CLIENTS,
    metrics: Metrics | None = None,
    tap: DebugTap | None = None,
    apps: AppStore | None = None,
    store: ChannelStore | None = None,
    queue: WebhookQueue | None = None,
    limiter: RateLimiter | None = None,
    connection_limiter: RateLimiter | None = None,
    count_connections: bool = True,
) -> Services:
    """The services of one runtime, built once (the local server, one Lambda container). Drivers not handed
    in come from the settings. ``tap``: the debug console's, when it is on; the engine reports to it, and
    its frames sent per app are counted for the console."""
    apps = apps or ConfigAppStore(settings.apps)
    store = store or create_store(settings.store, clients, settings.aws)
    queue_settings = settings.queue
    if queue_settings.driver == "redis" and queue_settings.url is None and settings.store.driver == "redis":
        queue_settings = queue_settings.model_copy(update={"url": settings.store.url})
    queue = queue or create_queue(queue_settings, clients)
    limiter = limiter or create_limiter(settings.store, clients)
    metrics = metrics or NullMetrics()
    if tap is not None:
        metrics = TapMetrics(metrics, tap)
    engine = Engine(
        apps=apps,
        store=store,
        sender=sender,
        webhooks=queue,
        limiter=limiter,
        connection_limiter=connection_limiter,
        count_connections=count_connections,
        metrics=metrics,
        observer=tap if tap is not None else NULL_OBSERVER,
        activity_timeout=settings.activity_timeout,
        cache_ttl_seconds=settings.cache_ttl_seconds,
        max_frame_bytes=settings.max_frame_kb * 1024,
        connections_per_ip=settings.rate_limits.connections_per_ip,
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
        tap=tap,
    )
