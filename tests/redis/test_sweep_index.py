"""The sweep on the Valkey stack: the Redis store's liveness index behind the sweep's ``SweepIndex``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from functions.connections import SweepIndex, TouchingSweepIndex
from shared.redis.client import connect_redis
from shared.store.base import Connection
from shared.store.redis import RedisChannelStore
from shared.types import AppId, SocketId
from tests.redis.backend import REDIS_URL, redis_client, unique_prefix

APP = AppId("app-1")


@pytest.fixture
async def client() -> AsyncIterator[tuple[Redis, str]]:
    name = unique_prefix()
    async with redis_client(name):
        redis = connect_redis(REDIS_URL)
        yield redis, name
        await redis.aclose()


async def test_each_live_connection_comes_due_once_per_cycle(client: tuple[Redis, str]) -> None:
    now = [1000.0]
    store = RedisChannelStore(client[0], prefix=client[1], clock=lambda: now[0])
    for n in (1, 2):
        await store.add_connection(Connection(APP, SocketId(f"{n}.{n}"), now[0], connection_id=f"c{n}"), None)
    index = TouchingSweepIndex(store, cycle=300)
    assert isinstance(index, SweepIndex)
    now[0] = 1200.0
    assert await index.due_connections() == []
    now[0] = 1301.0
    assert sorted(c.connection_id or "" for c in await index.due_connections()) == ["c1", "c2"]
    now[0] = 1400.0
    assert await index.due_connections() == []  # touched when they came due: not again within the cycle
    now[0] = 1602.0
    assert len(await index.due_connections()) == 2
