"""The real Redis the Redis tests run against, and driver factories that clean up after themselves.

``SOCKLESS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) names it. Each factory uses a unique
key prefix and deletes every key under it afterwards, so tests never see each other's state and can run
against a Redis that holds other data. A missing Redis is a failure, never a silent skip.

The ``cluster`` factories run the same drivers in cluster mode (what ElastiCache Serverless requires)
against ``SOCKLESS_TEST_REDIS_CLUSTER_URL``, or else a three-shard Redis Cluster of local ``redis-server``
processes started on first use and stopped when the test process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from shared.limits.redis import RedisRateLimiter
from shared.redis.client import connect_redis
from shared.redis.nodes import RedisNodeRegistry
from shared.store.redis import RedisChannelStore
from shared.webhooks.redis import RedisWebhookQueue
from tests.serverproc import free_port

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


_cluster_url: str | None = os.environ.get("SOCKLESS_TEST_REDIS_CLUSTER_URL")
SERVER_ARGS = ("redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def redis_cluster_url() -> str:
    """A Redis Cluster with three primaries (every app's slot may live on a different shard)."""
    global _cluster_url
    if _cluster_url is not None:
        return _cluster_url
    workdir = tempfile.mkdtemp(prefix="sockless-redis-cluster-")
    ports = [_free_cluster_port() for _ in range(3)]
    procs = []
    for port in ports:
        directory = os.path.join(workdir, str(port))
        os.makedirs(directory)
        procs.append(
            subprocess.Popen(
                [*SERVER_ARGS, "--port", str(port), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def stop() -> None:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    for port in ports:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server (cluster) did not start"
            time.sleep(0.05)
    subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 15
    while (
        b"cluster_state:ok"
        not in subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True).stdout
    ):
        assert time.monotonic() < deadline, "redis cluster did not converge"
        time.sleep(0.1)
    _cluster_url = f"redis://127.0.0.1:{ports[0]}/0"
    return _cluster_url


@contextlib.asynccontextmanager
async def redis_client(prefix: str, *, cluster_mode: bool = False) -> AsyncIterator[Redis]:
    """A client for the test Redis (or the test cluster); every key under ``prefix`` is deleted on exit."""
    client = connect_redis(redis_cluster_url() if cluster_mode else REDIS_URL, cluster_mode=cluster_mode)
    try:
        yield client
    finally:
        await flush_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_store(node_id: str | None = None, cluster_mode: bool = False) -> AsyncIterator[RedisChannelStore]:
    prefix = unique_prefix()
    async with redis_client(prefix, cluster_mode=cluster_mode) as client:
        node = None if node_id is None else RedisNodeRegistry(client, node_id=node_id, prefix=prefix)
        store = RedisChannelStore(client, prefix=prefix, node=node)
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def redis_limiter(cluster_mode: bool = False) -> AsyncIterator[RedisRateLimiter]:
    prefix = unique_prefix()
    async with redis_client(prefix, cluster_mode=cluster_mode) as client:
        limiter = RedisRateLimiter(client, prefix=prefix)
        try:
            yield limiter
        finally:
            await limiter.close()


@contextlib.asynccontextmanager
async def redis_queue(visibility_timeout: float = 1.0, cluster_mode: bool = False) -> AsyncIterator[RedisWebhookQueue]:
    prefix = unique_prefix()
    async with redis_client(prefix, cluster_mode=cluster_mode) as client:
        queue = RedisWebhookQueue(client, prefix=prefix, visibility_timeout=visibility_timeout)
        try:
            yield queue
        finally:
            await queue.close()
