"""The drivers every contract suite runs against: one registry per driver kind, name -> async factory.

To add a driver, write an ``asynccontextmanager`` that yields a ready, empty instance and cleans up
after the test (flush the Redis keys, delete the table), then register it under its config name::

    @contextlib.asynccontextmanager
    async def redis_store() -> AsyncIterator[ChannelStore]:
        client = redis.asyncio.Redis(...)
        store = RedisChannelStore(client, prefix=f"test-{uuid.uuid4().hex}")
        try:
            yield store
        finally:
            await client.flushdb()  # or delete the prefix
            await store.close()

    STORE_DRIVERS["redis"] = redis_store
    DRIVER_MARKS["redis"] = (pytest.mark.redis,)

Queue factories set a visibility timeout of ``QUEUE_VISIBILITY_TIMEOUT`` (SQS: the queue attribute).
The suites are parametrized over the registries' keys, so every test runs for every driver.
Factories must not fall back to memory when their backend is missing: a missing backend is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from shared.limits.base import RateLimiter
from shared.limits.memory import MemoryRateLimiter
from shared.store.base import ChannelStore
from shared.store.memory import MemoryChannelStore
from shared.webhooks.base import WebhookQueue
from shared.webhooks.memory import MemoryWebhookQueue
from tests.aws import backend as aws_backend
from tests.redis import backend as redis_backend

# Queue factories configure this visibility timeout, so the redelivery contract runs in about a second.
QUEUE_VISIBILITY_TIMEOUT = 1.0

StoreFactory = Callable[[], AbstractAsyncContextManager[ChannelStore]]
LimiterFactory = Callable[[], AbstractAsyncContextManager[RateLimiter]]
QueueFactory = Callable[[], AbstractAsyncContextManager[WebhookQueue]]


@contextlib.asynccontextmanager
async def memory_store() -> AsyncIterator[ChannelStore]:
    store = MemoryChannelStore()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def memory_limiter() -> AsyncIterator[RateLimiter]:
    limiter = MemoryRateLimiter()
    try:
        yield limiter
    finally:
        await limiter.close()


@contextlib.asynccontextmanager
async def memory_queue() -> AsyncIterator[WebhookQueue]:
    queue = MemoryWebhookQueue(visibility_timeout=QUEUE_VISIBILITY_TIMEOUT)
    try:
        yield queue
    finally:
        await queue.close()


STORE_DRIVERS: dict[str, StoreFactory] = {"memory": memory_store}
LIMITER_DRIVERS: dict[str, LimiterFactory] = {"memory": memory_limiter}
QUEUE_DRIVERS: dict[str, QueueFactory] = {"memory": memory_queue}

# Marks for drivers that need a backend (``pytest.mark.redis`` lets `-m "not redis"` skip them).
DRIVER_MARKS: dict[str, tuple[Any, ...]] = {}

# Real Redis (SOCKLESS_TEST_REDIS_URL), a unique key prefix per test, flushed afterwards.
STORE_DRIVERS["redis"] = redis_backend.redis_store
LIMITER_DRIVERS["redis"] = redis_backend.redis_limiter
QUEUE_DRIVERS["redis"] = lambda: redis_backend.redis_queue(QUEUE_VISIBILITY_TIMEOUT)
DRIVER_MARKS["redis"] = (pytest.mark.redis,)
# The same drivers in cluster mode (ElastiCache Serverless), on a three-shard Redis Cluster.
STORE_DRIVERS["redis-cluster"] = lambda: redis_backend.redis_store(cluster_mode=True)
LIMITER_DRIVERS["redis-cluster"] = lambda: redis_backend.redis_limiter(cluster_mode=True)
QUEUE_DRIVERS["redis-cluster"] = lambda: redis_backend.redis_queue(QUEUE_VISIBILITY_TIMEOUT, cluster_mode=True)
DRIVER_MARKS["redis-cluster"] = (pytest.mark.redis,)

# DynamoDB and SQS in moto (in-process ``mock_aws``), a fresh table or queue per test.
STORE_DRIVERS["dynamodb"] = aws_backend.dynamodb_store
LIMITER_DRIVERS["dynamodb"] = aws_backend.dynamodb_limiter
QUEUE_DRIVERS["sqs"] = lambda: aws_backend.sqs_queue(QUEUE_VISIBILITY_TIMEOUT)


def params(registry: dict[str, Any]) -> list[Any]:
    """``pytest.param`` per registered driver, with the driver's marks and its name as the test id."""
    return [pytest.param(name, marks=DRIVER_MARKS.get(name, ()), id=name) for name in registry]
