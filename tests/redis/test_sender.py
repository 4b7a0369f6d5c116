"""``RedisSender`` routing on a real Redis: each remote socket is reached through the one node that holds it,
nodes without recipients hear nothing, and a Redis outage never stops delivery to local sockets.

Three senders in one process stand for three nodes; their transports record what they would have written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from shared.redis.client import connect_redis
from shared.redis.node_index import NodeIndex
from shared.redis.nodes import RedisNodeRegistry
from shared.sender.redis import RedisSender
from shared.store.base import Connection, Member, Subscription
from shared.store.redis import RedisChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.redis.backend import REDIS_URL, redis_client, unique_prefix
from tests.serverproc import free_port

pytestmark = pytest.mark.redis

APP = AppId("app-1")


@dataclass
class Recorder:
    """The transport boundary: what the WebSocket would have been sent, and how it was closed."""

    frames: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


@dataclass
class Events:
    """What the sender reports from peers (``PeerEvents``), recorded in place of the cluster node."""

    lost: list[tuple[AppId, list[SocketId]]] = field(default_factory=list)
    relayed_frames: int = 0
    resubscriptions: int = 0

    async def gone(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> None:
        self.lost.append((app_id, list(socket_ids)))

    def relayed(self, app_id: AppId, frames: int, nbytes: int) -> None:
        self.relayed_frames += frames

    async def resubscribed(self) -> None:
        self.resubscriptions += 1


@dataclass
class Node:
    sender: RedisSender
    store: RedisChannelStore
    client: Redis
    events: Events
    task: asyncio.Task[None]

    async def hold(self, socket_id: str) -> Recorder:
        """A socket connected to this node: recorded in the store, registered with the sender."""
        sid = SocketId(socket_id)
        await self.store.add_connection(Connection(app_id=APP, socket_id=sid, connected_at=time.time()), None)
        recorder = Recorder()
        self.sender.register(sid, recorder)
        return recorder


def node_parts(client: Redis, prefix: str, node_id: str) -> tuple[RedisChannelStore, RedisSender]:
    """A node's store and sender as the local server wires them (``LocalServer._cluster_node``): one registry,
    one subscription index."""
    registry = RedisNodeRegistry(client, node_id=node_id, prefix=prefix)
    index = NodeIndex()
    store = RedisChannelStore(client, prefix=prefix, node=registry, index=index)
    return store, RedisSender(client, node_id=node_id, index=index, locator=registry, prefix=prefix)


@contextlib.asynccontextmanager
async def nodes(count: int) -> AsyncIterator[list[Node]]:
    prefix = unique_prefix()
    async with redis_client(prefix):
        started: list[Node] = []
        try:
            for n in range(count):
                client = connect_redis(REDIS_URL)
                store, sender = node_parts(client, prefix, f"n{n}")
                events = Events()
                started.append(Node(sender, store, client, events, asyncio.create_task(sender.listen(events))))
            deadline = time.monotonic() + 5
            while not all(n.sender.listening for n in started):
                assert time.monotonic() < deadline, "listeners did not subscribe"
                await asyncio.sleep(0.01)
            yield started
        finally:
            for node in started:
                node.task.cancel()
                await asyncio.gather(node.task, return_exceptions=True)
                await node.client.aclose()


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_broadcast_reaches_each_socket_once_through_the_node_holding_it() -> None:
    async with nodes(3) as (a, b, c):
        here, there, also_there = await a.hold("1.1"), await b.hold("2.2"), await b.hold("2.3")
        ids = [SocketId("1.1"), SocketId("2.2"), SocketId("2.3")]

        delivery = await a.sender.broadcast(APP, ids, b"frame-1")

        assert delivery.sent == 3
        assert delivery.gone == ()
        assert here.frames == [b"frame-1"]
        await eventually(lambda: there.frames == [b"frame-1"] and also_there.frames == [b"frame-1"])
        # One message for node b (both its sockets), none for node c.
        assert a.sender.published == 1
        assert b.sender.relayed == 2
        await asyncio.sleep(0.2)
        assert c.sender.relayed == 0


async def test_broadcast_skips_the_excepted_socket_wherever_it_is() -> None:
    async with nodes(2) as (a, b):
        mine, theirs = await a.hold("1.1"), await b.hold("2.2")
        await a.sender.broadcast(APP, [SocketId("1.1"), SocketId("2.2")], b"x", except_socket=SocketId("2.2"))
        await a.sender.broadcast(APP, [SocketId("1.1"), SocketId("2.2")], b"y", except_socket=SocketId("1.1"))
        await eventually(lambda: theirs.frames == [b"y"])
        assert mine.frames == [b"x"]


async def test_sockets_no_node_holds_are_reported_gone() -> None:
    async with nodes(2) as (a, b):
        await b.hold("2.2")
        delivery = await a.sender.broadcast(APP, [SocketId("2.2"), SocketId("9.9")], b"x")
        assert delivery.gone == (SocketId("9.9"),)
        assert delivery.sent == 1


async def test_a_node_asked_to_deliver_to_a_socket_it_does_not_hold_reports_it_gone_once() -> None:
    """The store says node b holds the socket, node b does not (it lost it while Redis was away)."""
    async with nodes(2) as (a, b):
        orphan = SocketId("2.2")
        await b.store.add_connection(Connection(app_id=APP, socket_id=orphan, connected_at=time.time()), None)
        for _ in range(3):
            await a.sender.broadcast(APP, [orphan], b"x")
        await eventually(lambda: b.events.lost == [(APP, [orphan])])
        await asyncio.sleep(0.2)
        assert b.events.lost == [(APP, [orphan])]


async def test_a_socket_its_node_just_closed_is_skipped_not_reported_gone() -> None:
    """Its own handler is removing it: reporting it gone from every broadcast meanwhile would make a mass
    disconnect quadratic (each departure's broadcast listing every socket still leaving)."""
    async with nodes(2) as (a, b):
        await a.hold("1.1")
        await b.hold("2.2")
        a.sender.unregister(SocketId("1.1"))
        b.sender.unregister(SocketId("2.2"))
        delivery = await a.sender.broadcast(APP, [SocketId("1.1"), SocketId("2.2")], b"x")
        assert delivery.gone == ()
        await asyncio.sleep(0.2)
        assert b.events.lost == []


async def joined(node: Node, socket_id: str, channel: str = "news") -> Recorder:
    """A socket held by ``node`` and subscribed there to ``channel``."""
    recorder = await node.hold(socket_id)
    await node.store.subscribe(APP, SocketId(socket_id), ChannelName(channel), None, 100)
    return recorder


def meshed(*cluster: Node) -> None:
    """What ClusterNode does from the nodes set: every node knows the others."""
    for node in cluster:
        node.sender.peers = {other.sender.node_id for other in cluster if other is not node}


async def test_channel_broadcast_reaches_every_nodes_own_subscribers_once() -> None:
    async with nodes(3) as (a, b, c):
        meshed(a, b, c)
        here, there, also_there = await joined(a, "1.1"), await joined(b, "2.2"), await joined(b, "2.3")
        elsewhere = await joined(c, "3.3", channel="other")

        delivery = await a.sender.broadcast_channel(APP, ChannelName("news"), b"frame-1")

        assert delivery.sent == 1  # this node's own; each peer counts what it writes
        assert here.frames == [b"frame-1"]
        await eventually(lambda: there.frames == [b"frame-1"] and also_there.frames == [b"frame-1"])
        assert b.sender.relayed == b.events.relayed_frames == 2
        await asyncio.sleep(0.2)
        assert elsewhere.frames == []
        assert there.frames == [b"frame-1"]


async def test_a_channels_frames_wait_while_a_sockets_join_is_in_flight_and_follow_what_it_was_sent() -> None:
    """The join's race in a cluster: the joiner is in its node's index before Redis has answered, so a peer's
    member_added can arrive first; pusher-js would then overwrite it with the roster of subscription_succeeded
    and lose that member. Held while the join is in flight, the channel's frames follow the joiner's own."""
    async with nodes(2) as (a, b):
        meshed(a, b)
        channel = ChannelName("presence-room")
        joiner = await a.hold("1.1")
        bystander = await joined(a, "1.2", channel="presence-room")
        member = Member(user_id=UserId("u1"), user_info={})
        a.sender.hold_channel(APP, SocketId("1.1"), channel)
        await a.store.subscribe(APP, SocketId("1.1"), channel, member, 100)  # in the index now

        await b.sender.broadcast_channel(APP, channel, b"member_added u2")  # a peer's join, relayed
        await eventually(lambda: bystander.frames == [b"member_added u2"])
        await a.sender.broadcast_channel(APP, channel, b"an event")  # and one of this node's own
        assert bystander.frames == [b"member_added u2", b"an event"]
        assert joiner.frames == []

        await a.sender.send(APP, SocketId("1.1"), b"subscription_succeeded")
        a.sender.release_channel(APP, SocketId("1.1"), channel)
        assert joiner.frames == [b"subscription_succeeded", b"member_added u2", b"an event"]
        await a.sender.broadcast_channel(APP, channel, b"after")  # not held any more
        assert joiner.frames[-1] == b"after"
        assert a.sender._joining == {}


async def test_a_peers_count_older_than_a_join_here_never_reaches_this_nodes_subscribers() -> None:
    """Subscription counts across nodes: pub/sub hands a peer's count over at its own pace, so it can arrive
    after a newer change made here (a join whose own count is higher). Stale, it is dropped, for the joiner
    (held while its join is in flight) and for every other subscriber here; other frames still flow."""
    async with nodes(2) as (a, b):
        meshed(a, b)
        room = ChannelName("room")
        bystander = await joined(a, "1.2", channel="room")
        alice = await b.hold("2.1")
        v1 = (await b.store.subscribe(APP, SocketId("2.1"), room, None, 100)).version
        joiner = await a.hold("1.1")
        a.sender.hold_channel(APP, SocketId("1.1"), room)
        a.sender.index.join(APP, SocketId("1.1"), room, None)  # as the store does before its Redis call
        await b.sender.broadcast_channel(APP, room, b"count 2 (alice's)", version=v1)  # arrives mid-join
        await b.sender.broadcast_channel(APP, room, b"an event")
        await eventually(lambda: bystander.frames[-1:] == [b"an event"])
        assert bystander.frames == [b"count 2 (alice's)", b"an event"]  # no newer change known here yet

        v2 = (await a.store.subscribe(APP, SocketId("1.1"), room, None, 100)).version
        assert v2 > v1 > 0
        await a.sender.send(APP, SocketId("1.1"), b"subscription_succeeded")
        a.sender.release_channel(APP, SocketId("1.1"), room)
        assert joiner.frames == [b"subscription_succeeded", b"an event"]  # the held count was older than the join
        await a.sender.broadcast_channel(APP, room, b"count 3 (the join's)", version=v2)
        await eventually(lambda: alice.frames[-1:] == [b"count 3 (the join's)"])

        await b.sender.broadcast_channel(APP, room, b"count 2 (alice's, late)", version=v1)  # a replay, say
        await b.sender.broadcast_channel(APP, room, b"another event")
        await eventually(lambda: bystander.frames[-1:] == [b"another event"])
        assert joiner.frames[-2:] == bystander.frames[-2:] == [b"count 3 (the join's)", b"another event"]
        v3 = (await a.store.unsubscribe(APP, SocketId("1.2"), room)).version
        assert v3 > v2
        assert a.sender.index.count_version(APP, room) == v3


async def test_a_held_join_keeps_other_channels_and_sockets_flowing() -> None:
    async with nodes(1) as (a,):
        elsewhere = await joined(a, "1.1", channel="news")
        joiner = await joined(a, "1.2", channel="news")
        a.sender.hold_channel(APP, SocketId("1.2"), ChannelName("presence-room"))
        await a.sender.broadcast_channel(APP, ChannelName("news"), b"x")
        assert elsewhere.frames == [b"x"] and joiner.frames == [b"x"]
        a.sender.release_channel(APP, SocketId("1.2"), ChannelName("presence-room"))
        assert joiner.frames == [b"x"]


async def test_channel_broadcast_skips_the_excepted_socket_on_whichever_node_holds_it() -> None:
    async with nodes(2) as (a, b):
        meshed(a, b)
        mine, theirs = await joined(a, "1.1"), await joined(b, "2.2")
        await a.sender.broadcast_channel(APP, ChannelName("news"), b"x", except_socket=SocketId("2.2"))
        await a.sender.broadcast_channel(APP, ChannelName("news"), b"y", except_socket=SocketId("1.1"))
        await eventually(lambda: theirs.frames == [b"y"])
        assert mine.frames == [b"x"]


async def test_sockets_that_left_the_channel_or_disconnected_get_no_channel_broadcast() -> None:
    async with nodes(2) as (a, b):
        meshed(a, b)
        stays, leaves, closes = await joined(b, "2.1"), await joined(b, "2.2"), await joined(b, "2.3")
        await b.store.unsubscribe(APP, SocketId("2.2"), ChannelName("news"))
        await b.store.remove_connection(APP, SocketId("2.3"))

        await a.sender.broadcast_channel(APP, ChannelName("news"), b"x")

        await eventually(lambda: stays.frames == [b"x"])
        await asyncio.sleep(0.2)
        assert leaves.frames == []
        assert closes.frames == []
        assert b.sender.index.sockets(APP, ChannelName("news")) == {SocketId("2.1")}


async def test_a_node_that_announces_itself_gets_the_peers_channel_broadcasts() -> None:
    async with nodes(2) as (a, late):
        late.sender.peers = {a.sender.node_id}  # it read the nodes set; a has not refreshed its peers yet
        subscriber = await joined(late, "2.2")
        await a.sender.broadcast_channel(APP, ChannelName("news"), b"before")

        await late.sender.announce()
        await eventually(lambda: a.sender.peers == {late.sender.node_id})
        await a.sender.broadcast_channel(APP, ChannelName("news"), b"after")

        await eventually(lambda: subscriber.frames == [b"after"])


async def test_messages_of_one_loop_iteration_reach_a_peer_as_one_pubsub_message_in_order() -> None:
    """Under load many events share one Redis round trip, and the peer handles them together."""
    async with nodes(2) as (a, b):
        meshed(a, b)
        subscriber = await joined(b, "2.2")
        frames = [f"frame-{i}".encode() for i in range(5)]

        await asyncio.gather(*(a.sender.broadcast_channel(APP, ChannelName("news"), f) for f in frames))

        await eventually(lambda: subscriber.frames == frames)
        assert a.sender.published == 1


async def test_a_nodes_index_answers_its_sockets_subscriptions_as_redis_does() -> None:
    """Client events check the sender's subscription (and its presence member) on every event; the node
    holding the socket answers from its index, which must agree with Redis."""
    async with nodes(1) as (a,):
        await a.hold("1.1")
        socket, channel = SocketId("1.1"), ChannelName("presence-room")
        await a.store.subscribe(APP, socket, channel, Member(user_id=UserId("u1"), user_info={}), 100)
        # A repeated subscribe changes nothing, in Redis or in the index.
        await a.store.subscribe(APP, socket, channel, Member(user_id=UserId("u2"), user_info={}), 100)
        redis_only = RedisChannelStore(a.client, prefix=a.store.keys.prefix)  # no index: asks Redis
        assert await a.store.subscription(APP, socket, channel) == Subscription(user_id=UserId("u1"))
        assert await redis_only.subscription(APP, socket, channel) == Subscription(user_id=UserId("u1"))

        await a.store.unsubscribe(APP, socket, channel)
        assert await a.store.subscription(APP, socket, channel) is None
        assert await redis_only.subscription(APP, socket, channel) is None


async def test_disconnect_is_routed_to_the_node_holding_the_socket() -> None:
    async with nodes(2) as (a, b):
        remote = await b.hold("2.2")
        await a.sender.disconnect(APP, SocketId("2.2"), 4009, "Connection terminated by the app")
        await eventually(lambda: remote.closed == (4009, "Connection terminated by the app"))


async def test_send_to_a_remote_socket_is_routed() -> None:
    async with nodes(2) as (a, b):
        remote = await b.hold("2.2")
        assert await a.sender.send(APP, SocketId("2.2"), b"one")
        assert not await a.sender.send(APP, SocketId("8.8"), b"nobody")
        await eventually(lambda: remote.frames == [b"one"])


async def test_local_sockets_keep_getting_frames_while_redis_is_unreachable() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    _, sender = node_parts(client, unique_prefix(), "n0")
    local = Recorder()
    sender.register(SocketId("1.1"), local)
    try:
        delivery = await sender.broadcast(APP, [SocketId("1.1"), SocketId("2.2")], b"x")
        assert local.frames == [b"x"]
        assert delivery.sent == 1
        assert delivery.failed == 1
        assert delivery.gone == ()
        assert sender.errors == 1
        assert await sender.check_health() is False
    finally:
        await client.aclose()
