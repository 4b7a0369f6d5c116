"""What ``RedisChannelStore`` promises beyond the shared contract (tests/contract runs that one on Redis too):
decisions atomic across separate clients, keys namespaced and bounded by TTLs, the node registry of the
local-server cluster, the connectionId map of the Lambda path, and ``StoreUnavailable`` when Redis is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.errors import StoreUnavailable
from shared.redis.client import connect_redis
from shared.redis.nodes import RedisNodeRegistry
from shared.store.base import Connection, JoinResult, Member
from shared.store.redis import RedisChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.redis.backend import REDIS_URL, redis_client, unique_prefix
from tests.serverproc import free_port

pytestmark = pytest.mark.redis

APP = AppId("app-1")
PRESENCE = ChannelName("presence-room")


def sid(n: int) -> SocketId:
    return SocketId(f"{n}.{n}")


def connection(n: int, connection_id: str | None = None) -> Connection:
    return Connection(app_id=APP, socket_id=sid(n), connected_at=time.time(), connection_id=connection_id)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    async with redis_client(name):
        yield name


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[Redis]:
    redis = connect_redis(REDIS_URL)
    yield redis
    await redis.aclose()


async def test_presence_decisions_hold_across_separate_clients(prefix: str) -> None:
    """Two processes are two connections: Redis runs each script alone, whichever connection sent it."""
    clients = [connect_redis(REDIS_URL) for _ in range(2)]
    stores = [
        RedisChannelStore(c, prefix=prefix, node=RedisNodeRegistry(c, node_id=f"node-{i}", prefix=prefix))
        for i, c in enumerate(clients)
    ]
    try:
        for n in range(20):
            assert await stores[n % 2].add_connection(connection(n), None)
        joins = await asyncio.gather(
            *(stores[n % 2].subscribe(APP, sid(n), PRESENCE, Member(UserId("u1"), None), 100) for n in range(20))
        )
        assert sum(isinstance(j, JoinResult) and j.member_added for j in joins) == 1
        assert sum(isinstance(j, JoinResult) and j.occupied for j in joins) == 1
        departures = await asyncio.gather(*(stores[(n + 1) % 2].remove_connection(APP, sid(n)) for n in range(20)))
        removed = [leave for d in departures if d is not None for leave in d.left if leave.member_removed]
        assert len(removed) == 1
        assert sum(leave.vacated for d in departures if d is not None for leave in d.left) == 1
        assert await stores[0].members(APP, PRESENCE) == {}
    finally:
        for c in clients:
            await c.aclose()


async def test_connection_quota_holds_across_separate_clients(prefix: str) -> None:
    clients = [connect_redis(REDIS_URL) for _ in range(3)]
    stores = [RedisChannelStore(c, prefix=prefix) for c in clients]
    try:
        accepted = await asyncio.gather(*(stores[n % 3].add_connection(connection(n), 7) for n in range(30)))
        assert sum(accepted) == 7
        assert await stores[0].connection_count(APP) == 7
    finally:
        for c in clients:
            await c.aclose()


async def test_keys_are_namespaced_per_app_and_expire(prefix: str, client: Redis) -> None:
    store = RedisChannelStore(client, prefix=prefix, ttl_seconds=600)
    await store.add_connection(connection(1), None)
    await store.sign_in(APP, sid(1), UserId("u1"), "{}", (UserId("u2"),))
    await store.subscribe(APP, sid(1), PRESENCE, Member(UserId("u1"), {"a": 1}), 100)
    await store.subscribe(APP, sid(1), ChannelName("news"), None, 100)

    keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
    app_keys = [k for k in keys if k.startswith(f"{prefix}:{{app-1}}:")]
    # Everything of the app shares the {app-1} hash tag (one cluster slot); only the app list is global.
    assert sorted(set(keys) - set(app_keys)) == [f"{prefix}:apps"]
    assert len(app_keys) >= 9
    for key in app_keys:
        assert 0 < await client.ttl(key) <= 600, key


async def test_zero_ttl_keeps_keys_until_removed(prefix: str, client: Redis) -> None:
    store = RedisChannelStore(client, prefix=prefix, ttl_seconds=0)
    await store.add_connection(connection(1), None)
    await store.subscribe(APP, sid(1), ChannelName("news"), None, 100)
    assert await client.ttl(f"{prefix}:{{app-1}}:ch:news") == -1
    await store.remove_connection(APP, sid(1))
    # Nothing of the app is left behind once its last connection is gone.
    assert [k async for k in client.scan_iter(match=f"{prefix}:{{app-1}}:*")] == []


async def test_refresh_ttl_gives_a_live_sockets_keys_their_full_ttl_back(prefix: str, client: Redis) -> None:
    node = RedisNodeRegistry(client, node_id="n1", prefix=prefix)
    store = RedisChannelStore(client, prefix=prefix, node=node, ttl_seconds=600)
    await store.add_connection(connection(1), None)
    await store.sign_in(APP, sid(1), UserId("u1"), "{}", (UserId("u2"),))
    await store.subscribe(APP, sid(1), PRESENCE, Member(UserId("u1"), None), 100)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:{{app-1}}:*")]
    for key in keys:
        await client.expire(key, 5)

    assert await store.refresh_ttl(APP, [sid(1), sid(2)]) == 1

    for key in keys:
        assert await client.ttl(key) > 500, key


async def test_node_registry_follows_connections(prefix: str, client: Redis) -> None:
    registry = RedisNodeRegistry(client, node_id="a", prefix=prefix)
    node_a = RedisChannelStore(client, prefix=prefix, node=registry)
    node_b = RedisChannelStore(client, prefix=prefix, node=RedisNodeRegistry(client, node_id="b", prefix=prefix))
    await node_a.add_connection(connection(1), None)
    await node_b.add_connection(connection(2), None)

    assert await registry.socket_nodes(APP, [sid(1), sid(2), sid(3)]) == ["a", "b", None]
    assert await registry.node_sockets(APP, "b") == {sid(2)}
    assert await registry.apps_of_node("b") == {APP}
    assert registry.apps == {APP}
    await node_a.remove_connection(APP, sid(2))
    assert await registry.node_sockets(APP, "b") == set()
    assert await registry.socket_nodes(APP, [sid(2)]) == [None]


async def test_connection_ids_map_both_ways_for_the_lambda_path(prefix: str, client: Redis) -> None:
    store = RedisChannelStore(client, prefix=prefix)
    await store.add_connection(connection(1, connection_id="abc="), None)
    await store.add_connection(connection(2, connection_id="def="), None)

    assert await store.socket_for_connection("abc=") == (APP, sid(1))
    assert await store.connection_ids(APP, [sid(1), sid(2), sid(3)]) == {sid(1): "abc=", sid(2): "def="}
    stored = await store.get_connection(APP, sid(1))
    assert stored is not None
    assert stored.connection_id == "abc="

    await store.remove_connection(APP, sid(1))
    assert await store.socket_for_connection("abc=") is None
    assert await store.connection_ids(APP, [sid(1)]) == {}


async def test_stale_connections_are_those_without_a_sign_of_life(prefix: str, client: Redis) -> None:
    now = [1000.0]
    store = RedisChannelStore(client, prefix=prefix, clock=lambda: now[0])
    for n in (1, 2, 3):
        await store.add_connection(connection(n, connection_id=f"c{n}"), None)
    now[0] = 1050.0
    assert await store.touch(APP, sid(2))
    assert not await store.touch(APP, sid(9))
    now[0] = 1100.0

    stale = await store.stale_connections(silent_for=60)
    assert sorted(c.socket_id for c in stale) == [sid(1), sid(3)]
    assert {c.connection_id for c in stale} == {"c1", "c3"}
    assert len(await store.stale_connections(silent_for=60, limit=1)) == 1
    # Settled ones (removed or touched) are not returned again.
    await store.remove_connection(APP, sid(1))
    assert await store.touch(APP, sid(3))
    assert await store.stale_connections(silent_for=60) == []


async def test_unreachable_redis_raises_store_unavailable() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    store = RedisChannelStore(client, prefix=unique_prefix())
    try:
        with pytest.raises(StoreUnavailable):
            await store.add_connection(connection(1), None)
        with pytest.raises(StoreUnavailable):
            await store.sockets(APP, ChannelName("news"))
        assert await store.check_health() is False
    finally:
        await client.aclose()
