"""Several real local-server processes sharing one Redis behave as one server to pusher-js and the SDKs.

Clients sit on node 1 and node 2; REST calls go to node 3, which holds no socket at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pusher
import pytest
import redis

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.redis.conftest import Cluster, RedisServer
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

APP = App.of(DEFAULT_APP)
NUMERIC = App.of(NUMERIC_APP)


def sdk(node: ServerProcess) -> pusher.Pusher:
    """The official Python SDK pointed at one node (numeric app: the SDK refuses other ids)."""
    return pusher.Pusher(
        app_id=NUMERIC.id, key=NUMERIC.key, secret=NUMERIC.secret, ssl=False, host="127.0.0.1", port=node.port
    )


async def call(node: ServerProcess, method: str, *args: Any) -> Any:
    return await asyncio.to_thread(getattr(sdk(node), method), *args)


async def test_rest_trigger_on_a_third_node_reaches_clients_on_both_other_nodes(
    cluster: Cluster, js: NodeDriver
) -> None:
    one, two, three = cluster.start(3)
    alice = await js.client("alice", NUMERIC, one.port)
    bob = await js.client("bob", NUMERIC, two.port)
    await alice.subscribe("news", "headline")
    await bob.subscribe("news", "headline")

    await call(three, "trigger", "news", "headline", {"title": "one cluster"})

    assert (await alice.expect("headline", "news"))["data"] == {"title": "one cluster"}
    assert (await bob.expect("headline", "news"))["data"] == {"title": "one cluster"}


async def test_every_subscriber_gets_every_broadcast_exactly_once(cluster: Cluster, js: NodeDriver) -> None:
    nodes = cluster.start(3)
    clients = [await js.client(f"c{i}", NUMERIC, nodes[i % 3].port) for i in range(6)]
    for client in clients:
        await client.subscribe("ticks", "tick")

    for n in range(5):
        await call(nodes[n % 3], "trigger", "ticks", "tick", {"n": n})

    for client in clients:
        got = sorted([(await client.expect("tick", "ticks"))["data"]["n"] for _ in range(5)])
        assert got == [0, 1, 2, 3, 4]
        await client.assert_no("tick", "ticks", kind="event", within=0.2)


async def test_a_node_started_later_gets_every_broadcast_for_its_subscribers(cluster: Cluster, js: NodeDriver) -> None:
    """Channel broadcasts go to the peers a node knows: a node joining announces itself before it accepts
    sockets, so its first subscriber already gets what the older nodes publish."""
    (one,) = cluster.start(1)
    early = await js.client("early", NUMERIC, one.port)
    await early.subscribe("news", "headline")
    (late,) = cluster.start(1)
    alice = await js.client("alice", NUMERIC, late.port)
    await alice.subscribe("news", "headline")

    await call(one, "trigger", "news", "headline", {"n": 1})

    assert (await alice.expect("headline", "news"))["data"] == {"n": 1}
    assert (await early.expect("headline", "news"))["data"] == {"n": 1}


async def test_presence_is_shared_by_clients_on_two_nodes(cluster: Cluster, js: NodeDriver) -> None:
    one, two = cluster.start(2)
    channel = "presence-room"
    alice = await js.client("alice", APP, one.port, user={"user_id": "alice", "user_info": {"name": "Alice"}})
    bob = await js.client("bob", APP, two.port, user={"user_id": "bob", "user_info": {"name": "Bob"}})

    joined = await alice.subscribe(channel)
    assert joined is not None
    assert joined["data"]["members"] == {"alice": {"name": "Alice"}}
    joined = await bob.subscribe(channel)
    assert joined is not None
    assert joined["data"]["members"] == {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}

    added = await alice.expect("pusher:member_added", channel)
    assert added["data"] == {"id": "bob", "info": {"name": "Bob"}}

    await bob.unsubscribe(channel)
    removed = await alice.expect("pusher:member_removed", channel)
    assert removed["data"]["id"] == "bob"
    assert (await alice.members(channel))["count"] == 1


async def test_subscription_counts_and_cached_events_cross_nodes(cluster: Cluster, js: NodeDriver) -> None:
    one, two = cluster.start(2)
    alice = await js.client("alice", NUMERIC, one.port)
    bob = await js.client("bob", NUMERIC, two.port)
    await alice.subscribe("room")
    assert (await alice.expect("pusher:subscription_count", "room"))["data"] == {"subscription_count": 1}
    await bob.subscribe("room")
    assert (await alice.expect("pusher:subscription_count", "room"))["data"] == {"subscription_count": 2}
    assert (await bob.expect("pusher:subscription_count", "room"))["data"] == {"subscription_count": 2}

    await alice.subscribe("cache-price", "price")
    await call(two, "trigger", "cache-price", "price", {"eur": 3})
    assert (await alice.expect("price", "cache-price"))["data"] == {"eur": 3}
    carol = await js.client("carol", NUMERIC, two.port)
    await carol.subscribe("cache-price", "price")
    assert (await carol.expect("price", "cache-price"))["data"] == {"eur": 3}


async def test_client_events_cross_nodes_and_skip_the_sender(cluster: Cluster, js: NodeDriver) -> None:
    one, two = cluster.start(2)
    channel = "private-chat"
    alice = await js.client("alice", APP, one.port)
    bob = await js.client("bob", APP, two.port)
    carol = await js.client("carol", APP, two.port)
    for client in (alice, bob, carol):
        await client.subscribe(channel, "client-typing")

    assert await alice.trigger(channel, "client-typing", {"who": "alice"})

    assert (await bob.expect("client-typing", channel))["data"] == {"who": "alice"}
    assert (await carol.expect("client-typing", channel))["data"] == {"who": "alice"}
    await alice.assert_no("client-typing", channel, kind="event", within=0.3)


async def test_client_event_limit_holds_per_connection_without_a_redis_call_per_event(
    cluster: Cluster, js: NodeDriver, private_redis: RedisServer
) -> None:
    """A socket lives on one node for its life, so its client-event budget is counted there: a burst over the
    limit still gets 4301, and no shared counter in Redis costs each client event another round trip."""
    one, two = cluster.start(2, url=private_redis.url)
    store = redis.Redis(port=private_redis.port)
    alice = await js.client("alice", APP, one.port)
    bob = await js.client("bob", APP, two.port)
    await alice.subscribe("private-burst", "client-n")
    await bob.subscribe("private-burst", "client-n")

    for n in range(12):  # the app allows 10 per second
        await alice.trigger("private-burst", "client-n", {"n": n})

    await alice.expect_error(4301)
    assert not list(store.scan_iter(match="*client_events*"))  # a shared counter would live for its 1 s window
    for n in range(10):
        assert (await bob.expect("client-n", "private-burst"))["data"] == {"n": n}
    await bob.assert_no("client-n", "private-burst", kind="event")
    assert (await alice.info())["state"] == "connected"
    store.close()


async def test_rest_queries_answer_for_the_whole_cluster(cluster: Cluster, js: NodeDriver) -> None:
    one, two, three = cluster.start(3)
    alice = await js.client("alice", NUMERIC, one.port, user={"user_id": "alice"})
    bob = await js.client("bob", NUMERIC, two.port, user={"user_id": "bob"})
    for client in (alice, bob):
        await client.subscribe("presence-lobby")
        await client.subscribe("news")

    channels = await call(three, "channels_info", None, None)
    assert set(channels["channels"]) == {"presence-lobby", "news"}
    presence = await call(three, "channels_info", "presence-", ["user_count"])
    assert presence["channels"] == {"presence-lobby": {"user_count": 2}}
    info = await call(three, "channel_info", "news", ["subscription_count"])
    assert info["occupied"] is True
    assert info["subscription_count"] == 2
    users = await call(three, "users_info", "presence-lobby")
    assert sorted(u["id"] for u in users["users"]) == ["alice", "bob"]


async def test_terminate_user_connections_reaches_the_node_holding_them(cluster: Cluster, js: NodeDriver) -> None:
    """``disconnect`` of a remote socket is routed to its node (the Node SDK: the Python one builds a bad URL)."""
    one, _two, three = cluster.start(3)
    alice = await js.client("alice", NUMERIC, one.port, signin={"id": "alice"})
    await alice.signin()

    reply = await js.sdk_terminate_user(NUMERIC, three.port, "alice")

    assert reply["status"] == 200, reply
    await alice.expect_error(4009)


async def test_send_to_user_reaches_the_users_sockets_on_every_node(cluster: Cluster, js: NodeDriver) -> None:
    one, two, three = cluster.start(3)
    laptop = await js.client("laptop", NUMERIC, one.port, signin={"id": "alice"})
    phone = await js.client("phone", NUMERIC, two.port, signin={"id": "alice"})
    await laptop.signin()
    await phone.signin()

    reply = await js.sdk_send_to_user(NUMERIC, three.port, "alice", "note", {"text": "hi"})

    assert reply["status"] == 200, reply
    assert (await laptop.expect("note", kind="user"))["data"] == {"text": "hi"}
    assert (await phone.expect("note", kind="user"))["data"] == {"text": "hi"}


async def test_mass_disconnect_across_nodes_costs_linear_redis_work(
    cluster: Cluster, private_redis: RedisServer
) -> None:
    """Each departure broadcasts the new subscription count to the sockets still there, some of which are
    leaving too. Counting those as gone and removing them again made a mass disconnect quadratic in Redis
    calls; each socket must cost a bounded number of scripts however many leave together."""
    one, two = cluster.start(2, url=private_redis.url)
    store = redis.Redis(port=private_redis.port)
    conns = f"{cluster.prefix}:{{{NUMERIC.id}}}:conns"
    count = 100  # subscription counts are broadcast on every change up to 100 subscribers
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        for n in range(count):
            node = (one, two)[n % 2]
            ws = await session.ws_connect(f"{node.ws_url}/app/{NUMERIC.key}?protocol=7")
            await ws.receive_str()
            await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": {"channel": "crowd"}}))
            sockets.append(ws)
        for ws in sockets:
            while "subscription_succeeded" not in await ws.receive_str():
                pass
        assert store.hlen(conns) == count
        scripts_before = store.info("commandstats")["cmdstat_evalsha"]["calls"]
        started = time.monotonic()
        await asyncio.gather(*(ws.close() for ws in sockets))
        while store.hlen(conns) and time.monotonic() - started < 20:
            await asyncio.sleep(0.1)
    scripts = store.info("commandstats")["cmdstat_evalsha"]["calls"] - scripts_before
    store.close()
    assert store.hlen(conns) == 0
    assert time.monotonic() - started < 10
    # One removal script per socket (101 measured); counting leaving sockets as gone took over 1000.
    assert scripts < 3 * count, scripts
