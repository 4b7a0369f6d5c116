"""The Redis webhook queue and rate limiter across processes (separate clients): jobs survive the process that
pushed them, every job goes to one worker at a time, limits are shared, and a Redis outage never escapes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from shared.errors import StoreUnavailable
from shared.limits.redis import RedisRateLimiter
from shared.redis.client import connect_redis
from shared.types import AppId
from shared.webhooks.base import WebhookJob
from shared.webhooks.redis import RedisWebhookQueue
from tests.redis.backend import REDIS_URL, redis_client, unique_prefix
from tests.serverproc import free_port

pytestmark = pytest.mark.redis


def job(n: int) -> WebhookJob:
    return WebhookJob(
        app_id=AppId("app-1"), event={"name": "channel_occupied", "channel": f"c{n}"}, target=0, time_ms=n
    )


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    async with redis_client(name):
        yield name


def queue(prefix: str, visibility: float = 1.0) -> RedisWebhookQueue:
    """A queue with its own client, as another process would have."""
    return RedisWebhookQueue(connect_redis(REDIS_URL), prefix=prefix, visibility_timeout=visibility, owns_client=True)


async def test_jobs_survive_the_process_that_pushed_them(prefix: str) -> None:
    first = queue(prefix)
    await first.push(job(1))
    await first.push(job(2), delay_seconds=1.0)
    await first.close()

    second = queue(prefix, visibility=30)
    try:
        received = await second.receive(10, 1.0)
        received += await second.receive(10, 2.0)
        assert sorted(j.event["channel"] for j in received) == ["c1", "c2"]
    finally:
        await second.close()


async def test_a_job_a_dead_worker_never_acked_goes_to_another_worker(prefix: str) -> None:
    dying, other = queue(prefix), queue(prefix)
    try:
        await dying.push(job(1))
        assert len(await dying.receive(10, 1.0)) == 1
        await dying.close()  # dies before ack
        assert await other.receive(10, 0.0) == []
        again = await other.receive(10, 3.0)
        assert [j.event["channel"] for j in again] == ["c1"]
        await other.ack(again)
        assert await other.pending() == 0
    finally:
        await other.close()


async def test_concurrent_workers_each_get_a_job_once(prefix: str) -> None:
    workers = [queue(prefix, visibility=30) for _ in range(3)]
    try:
        for n in range(60):
            await workers[0].push(job(n))

        async def drain(worker: RedisWebhookQueue) -> list[WebhookJob]:
            got: list[WebhookJob] = []
            while batch := await worker.receive(7, 0.2):
                got += batch
            return got

        results = await asyncio.gather(*(drain(w) for w in workers))
        ids = [j.id for got in results for j in got]
        assert sorted(ids) == sorted({j.id for got in results for j in got})
        assert len(ids) == 60
    finally:
        for worker in workers:
            await worker.close()


async def test_a_retry_copy_survives_the_ack_of_its_original(prefix: str) -> None:
    """The dispatcher pushes the retry (same job id, attempts + 1) and then acks the original."""
    q = queue(prefix)
    try:
        await q.push(job(1))
        (original,) = await q.receive(10, 1.0)
        await q.push(replace(original, attempts=1, receipt=None))
        await q.ack([original])
        (retry,) = await q.receive(10, 1.0)
        assert retry.id == original.id
        assert retry.attempts == 1
    finally:
        await q.close()


async def test_queue_reports_an_unreachable_redis() -> None:
    q = RedisWebhookQueue(connect_redis(f"redis://127.0.0.1:{free_port()}/0"), owns_client=True)
    try:
        with pytest.raises(StoreUnavailable):
            await q.push(job(1))
        with pytest.raises(StoreUnavailable):
            await q.receive(10, 0.1)
        assert await q.check_health() is False
    finally:
        await q.close()


async def test_rate_limit_is_shared_by_every_process(prefix: str) -> None:
    limiters = [RedisRateLimiter(connect_redis(REDIS_URL), prefix=prefix, owns_client=True) for _ in range(3)]
    try:
        results = await asyncio.gather(*(limiters[n % 3].hit("client_events:a:1.1", 10, 10.0) for n in range(30)))
        assert sum(results) == 10
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_rate_limiter_counts_in_process_while_redis_is_unreachable() -> None:
    """A limiter that raised would close client sockets; one that refused all would stop client events."""
    limiter = RedisRateLimiter(connect_redis(f"redis://127.0.0.1:{free_port()}/0"), owns_client=True)
    try:
        assert [await limiter.hit("k", 2, 10.0) for _ in range(3)] == [True, True, False]
        assert limiter.errors == 3
        assert await limiter.check_health() is False
    finally:
        await limiter.close()


async def test_a_receive_loop_always_stops_when_cancelled(prefix: str) -> None:
    """Python 3.11's asyncio.Condition (under redis-py's blocking pool) can lose a cancellation that comes
    with a notify; the dispatcher's receive loop then never stopped and SIGTERM hung. Cancel it at random
    moments, with other tasks competing for the pool, and it must stop every time."""
    q = RedisWebhookQueue(connect_redis(REDIS_URL), prefix=prefix, owns_client=True)
    rng = random.Random(7)
    try:

        async def loop() -> None:
            while True:
                await q.receive(10, rng.choice([0.0, 0.05, 1.0]))

        for _ in range(150):
            task = asyncio.create_task(loop())
            noise = [asyncio.create_task(q.pending()) for _ in range(3)]
            await asyncio.sleep(rng.random() * 0.03)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            await asyncio.gather(*noise, return_exceptions=True)
            assert done, "a cancelled receive loop kept running"
            assert task.cancelled()
    finally:
        await q.close()
