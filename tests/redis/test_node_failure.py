"""A node that dies leaves no ghost: its peers remove its connections once its lease expires, with the same
frames and webhooks as if its clients had disconnected; webhook jobs it had queued are delivered by the others.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pusher
import pytest
import redis
from aiohttp import web

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, JsClient, NodeDriver
from tests.e2e.test_metrics import scrape
from tests.redis.conftest import TEST_LEASE_SECONDS, Cluster
from tests.serverproc import ServerProcess, free_port

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

NUMERIC = App.of(NUMERIC_APP)
# The lease runs out, a reaper notices (it looks every sixth of a lease) and confirms a third of a lease
# later; allow one more second for a loaded two-core machine.
# lease_seconds is the promise; the extra second covers pusher-js's own latency and the loaded test machine.
REMOVAL_DEADLINE = TEST_LEASE_SECONDS + 1.0


class Hooks:
    """A webhook receiver: every event of every request, in arrival order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Condition()
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        async with self.arrived:
            self.events += body["events"]
            self.arrived.notify_all()
        return web.Response(text="ok")

    async def expect(self, timeout: float, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((e for e in self.events if all(e.get(k) == v for k, v in fields.items())), None)

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: find() is not None), timeout)
        found = find()
        assert found is not None
        return found


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    receiver = Hooks()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


def with_hooks(hooks: Hooks) -> list[dict[str, Any]]:
    hook = {"url": f"http://127.0.0.1:{hooks.port}/hook", "event_types": ["member_added", "member_removed"]}
    return [{**NUMERIC_APP, "webhooks": [hook]}, DEFAULT_APP]


def users_on(node: ServerProcess, channel: str) -> list[str]:
    client = pusher.Pusher(
        app_id=NUMERIC.id, key=NUMERIC.key, secret=NUMERIC.secret, ssl=False, host="127.0.0.1", port=node.port
    )
    return sorted(u["id"] for u in client.users_info(channel)["users"])


async def members_on(js: NodeDriver, one: ServerProcess, two: ServerProcess, channel: str) -> tuple[JsClient, JsClient]:
    """alice on node one and bob on node two, both members of ``channel``, once alice has seen bob join."""
    alice = await js.client("alice", NUMERIC, one.port, user={"user_id": "alice"})
    bob = await js.client("bob", NUMERIC, two.port, user={"user_id": "bob"})
    await alice.subscribe(channel)
    await bob.subscribe(channel)
    await alice.expect("pusher:member_added", channel)
    return alice, bob


async def test_killed_node_members_are_removed_within_the_lease(cluster: Cluster, js: NodeDriver, hooks: Hooks) -> None:
    one, two, three = cluster.start(3, apps=with_hooks(hooks))
    channel = "presence-room"
    alice, _bob = await members_on(js, one, two, channel)
    assert await asyncio.to_thread(users_on, three, channel) == ["alice", "bob"]

    two.stop(signal.SIGKILL)
    killed_at = time.monotonic()

    removed = await alice.expect("pusher:member_removed", channel, timeout=REMOVAL_DEADLINE + 2)
    assert removed["data"]["id"] == "bob"
    assert time.monotonic() - killed_at <= REMOVAL_DEADLINE
    assert await asyncio.to_thread(users_on, three, channel) == ["alice"]
    # member_removed waits its 3 s (Pusher's debounce), then a surviving node delivers it.
    event = await hooks.expect(10.0, name="member_removed", user_id="bob")
    assert event["channel"] == channel
    # Removed exactly once, although two survivors run a reaper.
    await alice.assert_no("pusher:member_removed", channel, kind="event", within=TEST_LEASE_SECONDS)
    assert [e for e in hooks.events if e["name"] == "member_removed"] == [event]


async def test_each_node_counts_only_its_own_sockets_after_reaping_a_dead_peer(
    cluster: Cluster, js: NodeDriver
) -> None:
    """``sockless_connected`` is per node, so the cluster's total is their sum: the survivor that removes a
    dead peer's connections must not count them as its own departures (it went negative before)."""
    one, two, three = cluster.start(3)
    channel = "presence-room"
    alice, _bob = await members_on(js, one, two, channel)

    two.stop(signal.SIGKILL)
    await alice.expect("pusher:member_removed", channel, timeout=REMOVAL_DEADLINE + 2)

    assert (await scrape(one, NUMERIC.id))["sockless_connected"] == 1
    assert (await scrape(three, NUMERIC.id)).get("sockless_connected", 0) == 0


async def test_stopped_node_removes_its_members_at_once(cluster: Cluster, js: NodeDriver) -> None:
    """SIGTERM: the node closes its sockets with 4200 and removes them itself, without waiting for a lease."""
    one, two = cluster.start(2, lease=30.0)
    channel = "presence-room"
    alice = await js.client("alice", NUMERIC, one.port, user={"user_id": "alice"})
    bob = await js.client("bob", NUMERIC, two.port, user={"user_id": "bob"}, options={"reconnect": False})
    await alice.subscribe(channel)
    await bob.subscribe(channel)

    started = time.monotonic()
    await asyncio.to_thread(two.stop, signal.SIGTERM)

    removed = await alice.expect("pusher:member_removed", channel, timeout=10)
    assert removed["data"]["id"] == "bob"
    assert time.monotonic() - started < 10


async def test_webhooks_queued_by_a_killed_node_are_delivered_by_another(
    cluster: Cluster, js: NodeDriver, hooks: Hooks
) -> None:
    one, two = cluster.start(2, apps=with_hooks(hooks))
    channel = "presence-room"
    alice, bob = await members_on(js, one, two, channel)
    jobs = f"{cluster.prefix}:{{webhooks}}:jobs"
    queued = redis.Redis.from_url(cluster.url)

    async def queue_holds(count: int) -> None:
        deadline = time.monotonic() + 5.0
        while queued.hlen(jobs) != count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert queued.hlen(jobs) == count

    try:
        # The joins' member_added jobs are delivered and acked first: a job stays in the queue until its
        # delivery is acknowledged, which a loaded machine can delay past bob's unsubscribe.
        await hooks.expect(10.0, name="member_added", user_id="bob")
        await queue_holds(0)
        # Node two queues member_removed with Pusher's 3 s delay, then dies before it is due.
        await bob.unsubscribe(channel)
        await alice.expect("pusher:member_removed", channel)
        await queue_holds(1)
    finally:
        queued.close()
    two.stop(signal.SIGKILL)

    event = await hooks.expect(10.0, name="member_removed", user_id="bob")
    assert event["channel"] == channel
