"""Redis unavailable: sockets stay open, ``/up`` says 503, nothing crashes, and the state converges once
Redis is back, whether it kept its data (a partition, here SIGSTOP) or lost it (a restart without persistence).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pusher
import pytest

from tests.conftest import NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.redis.conftest import Cluster, RedisServer
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

NUMERIC = App.of(NUMERIC_APP)


def health(node: ServerProcess) -> tuple[int, dict[str, bool]]:
    try:
        with urllib.request.urlopen(f"{node.url}/up", timeout=10) as response:
            return response.status, json.loads(response.read())["checks"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["checks"]


async def wait_health(node: ServerProcess, status: int, timeout: float = 15.0) -> dict[str, bool]:
    deadline = time.monotonic() + timeout
    while True:
        code, checks = await asyncio.to_thread(health, node)
        if code == status:
            return checks
        assert time.monotonic() < deadline, f"/up stayed {code} {checks}, expected {status}"
        await asyncio.sleep(0.2)


def users_on(node: ServerProcess, channel: str) -> list[str]:
    client = pusher.Pusher(
        app_id=NUMERIC.id, key=NUMERIC.key, secret=NUMERIC.secret, ssl=False, host="127.0.0.1", port=node.port
    )
    return sorted(u["id"] for u in client.users_info(channel)["users"])


async def test_partition_keeps_sockets_open_and_converges_when_redis_returns(
    cluster: Cluster, private_redis: RedisServer, js: NodeDriver
) -> None:
    one, two = cluster.start(2, url=private_redis.url)
    channel = "presence-room"
    alice = await js.client("alice", NUMERIC, one.port, user={"user_id": "alice"})
    bob = await js.client("bob", NUMERIC, two.port, user={"user_id": "bob"})
    await alice.subscribe(channel, "news")
    await bob.subscribe(channel)
    await alice.expect("pusher:member_added", channel)

    private_redis.pause()
    checks = await wait_health(one, 503)
    assert checks["store"] is False
    # Bob leaves while nobody can record it: node two's removal times out (3 s, one retry) and fails.
    await bob.disconnect()
    await asyncio.sleep(7.5)
    assert "disconnected" not in alice.states()[1:]
    # Every lease has lapsed meanwhile: no node may take that for its peers' death.
    private_redis.resume()

    await wait_health(one, 200)
    await wait_health(two, 200)
    # Node two reconciles: the socket it no longer holds is removed, with the usual frames.
    removed = await alice.expect("pusher:member_removed", channel, timeout=15)
    assert removed["data"]["id"] == "bob"
    assert await asyncio.to_thread(users_on, one, channel) == ["alice"]
    # Alice's socket survived the outage and still gets events.
    await asyncio.to_thread(
        pusher.Pusher(
            app_id=NUMERIC.id, key=NUMERIC.key, secret=NUMERIC.secret, ssl=False, host="127.0.0.1", port=two.port
        ).trigger,
        channel,
        "news",
        {"after": "outage"},
    )
    assert (await alice.expect("news", channel))["data"] == {"after": "outage"}
    assert one.proc is not None and one.proc.poll() is None
    assert two.proc is not None and two.proc.poll() is None
    # The failures were counted where an operator looks.
    assert redis_errors(one) > 0
    assert redis_errors(two) > 0


def redis_errors(node: ServerProcess) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("sockless_redis_errors_total{"))


async def test_redis_restarted_empty_makes_clients_resubscribe_and_state_is_rebuilt(
    cluster: Cluster, private_redis: RedisServer, js: NodeDriver
) -> None:
    (node,) = cluster.start(1, url=private_redis.url)
    channel = "presence-room"
    alice = await js.client("alice", NUMERIC, node.port, user={"user_id": "alice"})
    await alice.subscribe(channel)

    private_redis.kill()
    await wait_health(node, 503)
    await asyncio.sleep(0.5)
    assert alice.states()[-1] == "connected"
    private_redis.start()

    # The node finds its socket missing from the empty store and closes it with 4200: pusher-js
    # reconnects at once and subscribes again, which rebuilds the presence state.
    await alice.expect_state("connecting", timeout=15)
    await alice.expect_state("connected", timeout=10)
    joined = await alice.expect("pusher:subscription_succeeded", channel, timeout=10)
    assert joined["data"]["members"] == {"alice": None} or list(joined["data"]["members"]) == ["alice"]
    await wait_health(node, 200)
    assert await asyncio.to_thread(users_on, node, channel) == ["alice"]
    assert node.proc is not None and node.proc.poll() is None
