"""``BatchedScript``: a burst of script calls shares round trips, and each call still gets its own result or error.

Run against a private ``redis-server`` (SCRIPT FLUSH and CLIENT LIST must not see other tests' clients).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from redis.exceptions import ResponseError

from shared.redis.batching import BatchedScript
from shared.redis.client import connect_redis
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
    with redis.Redis(port=private_redis.port) as observer:
        assert int(observer.get("k") or 0) == 50
    # Fifty concurrent calls went out together: one pooled connection.
    assert len(private_redis.clients()) == 1


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
    with redis.Redis(port=private_redis.port) as observer:
        observer.script_flush()

    results = await asyncio.gather(*(script(keys=["k"], args=[f"v{i}"]) for i in range(5)))

    assert results == [f"v{i}".encode() for i in range(5)]


async def test_redis_gone_fails_every_call_of_the_burst(script: BatchedScript, private_redis: RedisServer) -> None:
    await script(keys=["k"], args=["warm"])
    private_redis.kill()

    results = await asyncio.gather(*(script(keys=["k"], args=[f"v{i}"]) for i in range(5)), return_exceptions=True)

    assert all(isinstance(result, (redis.RedisError, OSError)) for result in results), results


@pytest.mark.parametrize(("serial", "connections"), [(True, 1), (False, 11)])
async def test_a_serial_script_sends_the_calls_made_during_a_round_trip_in_one_batch(
    private_redis: RedisServer, serial: bool, connections: int
) -> None:
    client = connect_redis(private_redis.url)
    try:
        script = BatchedScript(client, client.register_script(ECHO_OR_FAIL), serial=serial)
        # Redis stopped (SIGSTOP) holds the first call's round trip open for as long as the test needs: the
        # other calls are made during it whatever the machine's load (a script that ran for 50 ms did not).
        private_redis.pause()
        first = asyncio.create_task(script(keys=["k"], args=["first"]))
        later = []
        for i in range(10):
            await asyncio.sleep(0)  # each call made in an event-loop iteration of its own
            later.append(asyncio.create_task(script(keys=["k"], args=[f"v{i}"])))
        for _ in range(20):  # iterations, not time: each unbatched call takes a pooled connection of its own
            await asyncio.sleep(0)
        private_redis.resume()

        results = await asyncio.gather(first, *later)

        assert results == [b"first", *(f"v{i}".encode() for i in range(10))]
        # Serial: the ten waited for the first call and went as one batch once it was back, on the connection it
        # had returned to the pool. Otherwise each went at once, on a pooled connection of its own.
        assert len(private_redis.clients()) == connections
    finally:
        await client.aclose()
