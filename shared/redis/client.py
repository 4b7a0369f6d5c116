"""``connect_redis``: the one way sockless builds a Redis client (timeouts, retry, pool size, cluster mode)."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo

MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 5.0
# What each connection reports with CLIENT SETINFO, built once: without it redis-py builds it per connection,
# reading the installed package's metadata from disk each time (~0.5 ms, blocking the event loop: a burst
# opening the pool's 64 connections stalled every socket of the node for ~30 ms).
DRIVER_INFO = DriverInfo()


class _ClusterClient(RedisCluster):
    """redis-py 8.1's async cluster client breaks commands issued concurrently before its first one has
    discovered the cluster (``'NoneType' object has no attribute 'writelines'``): the command policy lookup
    runs ahead of the locked initialization. Initializing first, under its lock, avoids that."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def connect_redis(url: str, *, cluster_mode: bool = False) -> Redis:
    """A lazily connecting client (nothing happens on the network until the first command).

    ``cluster_mode`` builds a cluster client, required by ElastiCache Serverless and Redis Cluster; it
    shares the command API of ``Redis``, which is the type the drivers are written against.
    """
    # Fail fast: one quick retry covers a pooled connection that died with a Redis restart; longer waits
    # would only hold client frames hostage during an outage (the callers degrade instead).
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 3.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        "driver_info": DRIVER_INFO,
    }
    if cluster_mode:
        return cast(Redis, _ClusterClient.from_url(url, max_connections=MAX_CONNECTIONS, **options))
    # A bounded pool whose callers wait for a free connection: a burst of subscribes must queue up,
    # not fail with "Too many connections" (the default pool's behaviour at 100).
    pool = BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **options)
    return Redis.from_pool(pool)
