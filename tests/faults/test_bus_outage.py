"""#19.3 and #19.4: two nodes on a private Redis that is paused (SIGSTOP) or killed and restarted empty.
A REST publish is answered at once whatever Redis does; every publish answered 200 reaches the subscribers of
both nodes once the bus is back (the replay buffer); past the buffer's bound a publish is answered 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.redis.conftest import RedisServer, node_config
from tests.serverproc import ServerProcess
from tests.support import APP_ID, metric, signed_params

pytestmark = pytest.mark.redis


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.resume()
    server.kill()


def start_nodes(redis: RedisServer, count: int = 2, **store: Any) -> list[ServerProcess]:
    config = node_config(redis.url, "bus")
    config["store"].update(store)
    config["queue"] = {"driver": "memory"}  # the webhook queue is not what these tests are about
    return [ServerProcess(config).start() for _ in range(count)]


@pytest.fixture
def nodes(redis: RedisServer) -> Iterator[list[ServerProcess]]:
    started = start_nodes(redis)
    yield started
    for node in started:
        node.cleanup()


class Subscriber:
    """A WebSocket on one node, subscribed to ``feed``, collecting the ``n`` of every ``ev`` it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[int] = []
        self.closed_with: int | None = None
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def on(cls, http: aiohttp.ClientSession, node: ServerProcess) -> Subscriber:
        ws = await http.ws_connect(f"{node.ws_url}/app/app-key?protocol=7")
        assert (await ws.receive_json(timeout=5))["event"] == "pusher:connection_established"
        await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "feed"}})
        while (await ws.receive_json(timeout=5))["event"] != "pusher_internal:subscription_succeeded":
            pass
        return cls(ws)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame["event"] == "ev":
                    self.seen.append(json.loads(frame["data"])["n"])
        self.closed_with = self.ws.close_code

    async def until_seen(self, wanted: set[int], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not wanted <= set(self.seen):
                assert not self._task.done(), f"closed ({self.closed_with}) before all arrived: {self.seen}"
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.ws.close()
        await self._task


async def publish(http: aiohttp.ClientSession, node: ServerProcess, n: int) -> tuple[int, float, str | None]:
    """Publish event ``n`` to ``feed``: (status, seconds it took, Retry-After)."""
    path = f"/apps/{APP_ID}/events"
    body = json.dumps({"name": "ev", "channel": "feed", "data": json.dumps({"n": n})}).encode()
    started = time.monotonic()
    async with http.post(
        node.url + path, params=signed_params("POST", path, body), data=body, timeout=aiohttp.ClientTimeout(total=10)
    ) as response:
        await response.read()
        return response.status, time.monotonic() - started, response.headers.get("Retry-After")


async def test_a_hung_redis_delays_no_publish_and_loses_no_acknowledged_event(
    redis: RedisServer, nodes: list[ServerProcess], http: aiohttp.ClientSession
) -> None:
    one, two = nodes
    here, there = await Subscriber.on(http, one), await Subscriber.on(http, two)
    assert (await publish(http, one, 0))[0] == 200
    await there.until_seen({0}, timeout=5)

    redis.pause()
    acked, slowest = {0}, 0.0
    for n in range(1, 41):  # over 8 s: past the Redis client's 3 s socket timeout and its retry
        status, took, _ = await publish(http, one, n)
        slowest = max(slowest, took)
        if status == 200:
            acked.add(n)
        await asyncio.sleep(0.2)
    redis.resume()

    # Under the Redis client's 3 s socket timeout: nothing waited for Redis (before: until it resumed).
    assert slowest < 2.5, f"a publish waited {slowest:.1f} s for a hung Redis"
    assert acked == set(range(41))  # within the replay bound: every publish is taken
    await here.until_seen(acked, timeout=5)
    await there.until_seen(acked, timeout=30)  # replayed once the bus is back
    # Once each, in order: a batch that timed out on the hung Redis may still be run by Redis when it resumes,
    # and is replayed too; the receiving node drops the second copy (sequence numbers).
    assert there.seen == sorted(acked)
    assert await metric(one, "sockless_cluster_replay_bytes") == 0
    await here.close()
    await there.close()


async def test_an_event_published_while_redis_restarts_empty_reaches_the_other_node(
    redis: RedisServer, nodes: list[ServerProcess], http: aiohttp.ClientSession
) -> None:
    one, two = nodes
    there = await Subscriber.on(http, two)
    redis.kill()
    acked = set()
    for n in range(10):
        status, took, _ = await publish(http, one, n)
        assert took < 1.5
        if status == 200:
            acked.add(n)
    redis.start()  # the same port, nothing in it
    assert acked == set(range(10))
    # The other node's socket is closed for reconnecting (the store lost it), but only after the replay.
    await there.until_seen(acked, timeout=30)


async def test_past_the_replay_bound_publishes_are_refused_with_503(
    redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    one, two = start_nodes(redis, replay_seconds=1.0)
    try:
        there = await Subscriber.on(http, two)
        redis.pause()
        statuses: list[tuple[int, str | None]] = []
        started = time.monotonic()
        while time.monotonic() - started < 6:  # the first failed publish to Redis takes ~3 s to show
            status, took, retry_after = await publish(http, one, len(statuses))
            assert took < 1.5
            statuses.append((status, retry_after))
            await asyncio.sleep(0.1)
        assert statuses[0][0] == 200
        refused = [s for s in statuses if s[0] == 503]
        assert refused and all(retry_after for _, retry_after in refused)
        assert await metric(one, "sockless_cluster_publishes_refused_total") == len(refused)
        redis.resume()
        # Every publish answered 200 within the bound still arrives.
        acked = {n for n, (status, _) in enumerate(statuses) if status == 200}
        await there.until_seen(acked, timeout=30)
        await there.close()
    finally:
        one.cleanup()
        two.cleanup()
