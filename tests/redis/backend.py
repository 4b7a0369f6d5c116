"""The real Redis the Redis tests run against, and driver factories that clean up after themselves.

``SOCKLESS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) names it. Each factory uses a unique
key prefix and deletes every key under it afterwards, so tests never see each other's state and can run
against a Redis that holds other data. A missing Redis is a failure, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from shared.limits.redis import RedisRateLimiter
from shared.store.redis import RedisChannelStore, connect_redis
from shared.webhooks.redis import RedisWebhookQueue

REDIS_URL = os.environ.get("SOCKLESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unique_prefix() -> str:
    return f"sockless-test-{uuid.uuid4().hex[:12]}"


async def flush_prefix(client: Redis, prefix: str) -> None:
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@contextlib.asynccontextmanager
async def redis_client(prefix: str) -> AsyncIterator[Redis]:
    """A client for the test Redis; every key under ``prefix`` is deleted on exit."""
    client = connect_redis(REDIS_URL)
    try:
        yield client
    finally:
        await flush_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_store(node_id: str | None = None) -> AsyncIterator[RedisChannelStore]:
    prefix = unique_prefix()
    async with redis_client(prefix) as client:
        store = RedisChannelStore(client, prefix=prefix, node_id=node_id)
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def redis_limiter() -> AsyncIterator[RedisRateLimiter]:
    prefix = unique_prefix()
    async with redis_client(prefix) as client:
        limiter = RedisRateLimiter(client, prefix=prefix)
        try:
            yield limiter
        finally:
            await limiter.close()


@contextlib.asynccontextmanager
async def redis_queue(visibility_timeout: float = 1.0) -> AsyncIterator[RedisWebhookQueue]:
    prefix = unique_prefix()
    async with redis_client(prefix) as client:
        queue = RedisWebhookQueue(client, prefix=prefix, visibility_timeout=visibility_timeout)
        try:
            yield queue
        finally:
            await queue.close()
