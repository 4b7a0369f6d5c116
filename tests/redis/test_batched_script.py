"""``BatchedScript``: a burst of script calls shares round trips, and each call still gets its own result or error.

Run against a private ``redis-server`` (SCRIPT FLUSH and CLIENT LIST must not see other tests' clients).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from redis.exceptions import ResponseError

from shared.store.redis import BatchedScript, connect_redis
from tests.redis.conftest import RedisServer

pytestmark = pytest.mark.redis

ECHO_OR_FAIL = """
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
redis.call('INCR', KEYS[1])
return ARGV[1]
"""


@pytest.fixture
async def script(private_redis: RedisServer) -> AsyncIterator[BatchedScript]:
    client = connect_redis(private_redis.url)
    try:
        yield BatchedScript(client, client.register_script(ECHO_OR_FAIL))
    finally:
        await client.aclose()


async def test_a_burst_gets_each_call_its_own_result_over_one_connection(
    script: BatchedScript, private_redis: RedisServer
) -> None:
    results = await asyncio.gather(*(script(keys=["k"], args=[f"v{i}"]) for i in range(50)))

    assert results == [f"v{i}".encode() for i in range(50)]
    observer = redis.Redis(port=private_redis.port)
    assert int(observer.get("k") or 0) == 50
    # Fifty concurrent calls went out together: one pooled connection (the observer is the other client).
    assert len(observer.client_list()) == 2


async def test_an_error_fails_its_own_call_only(script: BatchedScript) -> None:
    results = await asyncio.gather(
        script(keys=["k"], args=["a"]),
        script(keys=["k"], args=["bad"]),
        script(keys=["k"], args=["c"]),
        return_exceptions=True,
    )

    assert results[0] == b"a"
    assert isinstance(results[1], ResponseError)
    assert "refused bad" in str(results[1])
    assert results[2] == b"c"


async def test_a_flushed_script_cache_is_reloaded_for_the_whole_burst(
    script: BatchedScript, private_redis: RedisServer
) -> None:
    assert await script(keys=["k"], args=["first"]) == b"first"
    redis.Redis(port=private_redis.port).script_flush()

    results = await asyncio.gather(*(script(keys=["k"], args=[f"v{i}"]) for i in range(5)))

    assert results == [f"v{i}".encode() for i in range(5)]


async def test_redis_gone_fails_every_call_of_the_burst(script: BatchedScript, private_redis: RedisServer) -> None:
    await script(keys=["k"], args=["warm"])
    private_redis.kill()

    results = await asyncio.gather(*(script(keys=["k"], args=[f"v{i}"]) for i in range(5)), return_exceptions=True)

    assert all(isinstance(result, (redis.RedisError, OSError)) for result in results), results
