"""``RedisSender``: the local server's sender in a cluster; frames for sockets on other nodes go via Redis pub/sub.

Each node subscribes to one channel of its own (``<prefix>:node:<node id>``, sharded pub/sub on Redis 7+).
A broadcast to a list of sockets (``broadcast``: a user's sockets, watchers) writes the node's own sockets
directly, then looks up which node holds each other socket (a ``SocketLocator``: the node registry,
``shared/redis/nodes.py``; the answer is cached, a socket never moves) and publishes *one* message per node
that holds recipients, listing them. That node writes the frame to those of its sockets, so each socket gets
the frame exactly once and nodes without recipients get nothing.

A broadcast to a *channel* (``broadcast_channel``: REST publishes, client events, member_added/removed,
subscription counts) needs no list at all: the node writes its own subscribers from its in-process index of
its sockets' subscriptions (a ``ChannelIndex``: ``shared/redis/node_index.py``), and publishes one small
message to every peer node, which does the same with its own index. No read of the channel's subscribers
from Redis, no socket ids on the wire: one pipelined round trip per event whatever the channel's size. Peers
are the nodes in ``<prefix>:nodes`` (refreshed with each heartbeat); a node starting up announces itself
(``H``) before it accepts sockets, so no peer misses it.

Wire format, one Redis message: ``B<app>\\n<id>,<id>...\\n<frame>`` (broadcast to sockets),
``C<app>\\n<channel>\\n<except socket or empty>\\n<count version or empty>\\n<frame>`` (broadcast to a
channel; the version only with a ``subscription_count``, ``NodeIndex.counted``; sent as
``S<node>\\n<sequence number>\\nC-body``, numbered so a replay never delivers one twice),
``D<app>\\n<id>\\n<code>\\n<reason>`` (disconnect) or ``H<node>`` (a node joined). App ids, socket ids and
channel names never contain ``\\n``; socket ids never ``,``. The nodes of one cluster run the same release:
the format is not negotiated.

**Replay** (issue #19.4, docs/operating-limits.md). Pub/sub keeps nothing: a channel broadcast published
while Redis is down, hung, or before a peer has re-subscribed after an outage would be lost for that peer's
subscribers while the REST publish that caused it was answered 200. So a channel broadcast counts as sent to a
peer only when ``(S)PUBLISH`` reports a receiver; otherwise it waits in that peer's *replay buffer*, in order
(later messages for the peer queue behind it), and is published again every ``REPLAY_INTERVAL`` until a
receiver takes it. The buffer is bounded by age (``replay_seconds``) and size (``replay_bytes``): while it
cannot take a new broadcast (full, or holding one older than the bound) the broadcast is refused with
``StoreUnavailable`` *before* anything is written locally, so a REST publish is answered 503 (Retry-After) and
a retry duplicates nothing. Messages for a node that left the peer set (reaped) are dropped. Nothing here ever
waits for Redis on a publisher's behalf: a hung Redis delays delivery to peers, never the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import StoreUnavailable
from shared.ratelog import RateLimitedLog
from shared.redis.errors import raise_if_cancelling
from shared.redis.keys import RedisKeys
from shared.sender.base import Delivery
from shared.sender.local import Fanout, LocalSender, write_each
from shared.types import AppId, ChannelName, SocketId

log = logging.getLogger("sockless.cluster")
replay_log = RateLimitedLog(log)


class PeerEvents(Protocol):
    """What the node does about what arrives from its peers (the cluster node, ``local_server/cluster.py``).
    Handed to :meth:`RedisSender.listen`: the node is built after its sender (the engine needs the sender)."""

    async def gone(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> None:
        """A peer routed frames here for sockets this node does not hold: remove them like a disconnect. Run in
        the background, once per socket; must not raise."""
        ...

    def relayed(self, app_id: AppId, frames: int, nbytes: int) -> None:
        """Frames written here for a peer's channel broadcast (for metrics)."""
        ...

    async def resubscribed(self) -> None:
        """Back on pub/sub after an outage: what was published meanwhile is lost; re-check the node's state."""
        ...


class ChannelIndex(Protocol):
    """This node's own subscribers of each channel, kept in process."""

    def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        """Exact for the sockets this node holds; read without awaiting in between (it changes as they
        subscribe and leave)."""
        ...

    def counted(self, app_id: AppId, channel: ChannelName, version: int) -> bool:
        """Note a subscription change of the channel (``JoinResult.version``); False if a newer one is known."""
        ...

    def count_version(self, app_id: AppId, channel: ChannelName) -> int:
        """The newest subscription change of the channel known here (0: none)."""
        ...


class SocketLocator(Protocol):
    """Where each socket of the cluster lives."""

    async def socket_nodes(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> list[str | None]:
        """The node holding each socket (``None``: not connected any more), in the order given; raises
        ``StoreUnavailable``."""
        ...


_ROUTE_CACHE_SIZE = 200_000
_RELEASED_SECONDS = 60.0
_RELEASED_MAX = 100_000
_LOG_EVERY_SECONDS = 10.0
# Batches sent or waiting for their turn before channel broadcasts wait for theirs (backpressure).
_MAX_BATCHES_IN_FLIGHT = 64
BACKPRESSURE_WAIT = 1.0  # seconds a channel broadcast may wait for Redis to catch up, at most
REPLAY_INTERVAL = 0.2  # seconds between attempts to publish what the replay buffer holds
REPLAY_SECONDS = 30.0
REPLAY_BYTES = 64 * 1024 * 1024
_REPLAY_CHUNK = 512 * 1024  # bytes of one peer's buffer sent in one message (an ``M`` batch)


def _batched(messages: list[bytes]) -> bytes:
    return b"M" + b"".join(len(m).to_bytes(4, "big") + m for m in messages)


def _unbatched(body: bytes) -> list[bytes]:
    out, pos, end = [], 0, len(body)
    while pos + 4 <= end:
        n = int.from_bytes(body[pos : pos + 4], "big")
        out.append(body[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if pos != end:
        raise ValueError("truncated batch")
    return out


def _number(message: bytes) -> int:
    """The sequence number of a numbered channel broadcast (``S<node>\\n<number>\\n...``)."""
    return int(message.split(b"\n", 2)[1])


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class RedisSender(LocalSender):
    """A ``LocalSender`` (the server registers its sockets here) that routes everything else through Redis.

    ``index`` must be the one the node's store keeps (``RedisChannelStore(index=...)``). What arrives from peers
    is reported to the ``PeerEvents`` handed to :meth:`listen`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        node_id: str,
        index: ChannelIndex,
        locator: SocketLocator,
        prefix: str = "sockless",
        fanout: Fanout = write_each,
        replay_seconds: float = REPLAY_SECONDS,
        replay_bytes: int = REPLAY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fanout)
        self.client = client
        self.index = index
        self.locator = locator
        self.node_id = node_id
        self.keys = RedisKeys(prefix)
        self.sharded = True  # sharded pub/sub (Redis 7+); ``listen`` says which
        self.channel = self.keys.node_channel(node_id)
        self.peers: set[str] = set()  # other nodes of the cluster (ClusterNode keeps it current)
        self.listening = False
        self.errors = 0
        self.published = 0  # messages published to peers (one per node per broadcast)
        self.relayed = 0  # frames written here on a peer's behalf
        self._routes: OrderedDict[SocketId, str] = OrderedDict()
        # Sockets this node let go of (closed, or reported gone) and whose removal is under way: they are
        # neither delivered to nor reported gone again. Without this, a mass disconnect turns into a storm:
        # every departure's broadcast lists the sockets still leaving, each reported gone, each removed again.
        self._released: OrderedDict[SocketId, float] = OrderedDict()
        self._cleanups: set[asyncio.Task[None]] = set()
        self._outbox: dict[str, list[bytes]] = {}  # messages of this loop iteration, by node (see _publish)
        self._batches: set[asyncio.Task[None]] = set()  # sent or waiting for their turn
        self._batch: asyncio.Future[None] | None = None
        self._sending = asyncio.Lock()
        self._last_log = 0.0
        # Replay buffer: channel broadcasts no receiver has taken yet, per peer, oldest first.
        self.replay_seconds = replay_seconds
        self.replay_bytes = replay_bytes
        self.clock = clock
        self._pending: dict[str, deque[tuple[float, bytes]]] = {}
        # Since when each peer has not taken what it was sent (cleared when it takes something again).
        self._stalled: dict[str, float] = {}
        self.pending_bytes = 0
        self.dropped = 0  # broadcasts given up: older than replay_seconds, or for a node that left
        self.refused = 0  # broadcasts refused because the buffer could not take them
        self.bus_down = False  # the last publish failed: new broadcasts go straight to the buffer
        self._replayer: asyncio.Task[None] | None = None
        # Channel broadcasts are numbered from the start time (a node restarted with the same id starts above
        # its old numbers); per peer, the highest number delivered here, so a replayed duplicate is dropped.
        self._seq = time.time_ns()
        self._seen: dict[str, int] = {}
        self.duplicates = 0
        self._in_flight: dict[asyncio.Task[None], float] = {}  # batches not yet answered by Redis, since when
        # Sockets whose presence join is in flight, per channel, with the channel's frames held for them.
        # joins in flight: (app, channel) -> socket -> the channel's frames held for it, each with its count version
        self._joining: dict[tuple[AppId, ChannelName], dict[SocketId, list[tuple[bytes, int]]]] = {}

    def holds(self, socket_id: SocketId) -> bool:
        return socket_id in self._sockets

    def unregister(self, socket_id: SocketId) -> None:
        super().unregister(socket_id)
        self._release([socket_id])

    def _release(self, socket_ids: Sequence[SocketId]) -> None:
        now = time.monotonic()
        released = self._released
        for socket_id in socket_ids:
            released[socket_id] = now
            released.move_to_end(socket_id)
        while released and (len(released) > _RELEASED_MAX or next(iter(released.values())) < now - _RELEASED_SECONDS):
            released.popitem(last=False)

    def _unreleased(self, socket_ids: Sequence[SocketId]) -> list[SocketId]:
        released = self._released
        return [s for s in socket_ids if s not in released]

    # -- joins in flight (ChannelBroadcaster.hold_channel) --------------------------------------------------

    def hold_channel(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        self._joining.setdefault((app_id, channel), {})[socket_id] = []

    def release_channel(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        key = (app_id, channel)
        waiting = self._joining.get(key)
        if waiting is None:
            return
        frames = waiting.pop(socket_id, None)
        if not waiting:
            del self._joining[key]
        transport = self._sockets.get(socket_id)
        if frames and transport is not None:
            # A count held while the join was in flight and older than the join says less than the count the
            # join itself brings (NodeIndex.counted): stale, dropped.
            newest = self.index.count_version(app_id, channel)
            for frame, version in frames:
                if not version or version >= newest:
                    transport.write(frame)

    async def _to_own_subscribers(
        self, app_id: AppId, channel: ChannelName, frame: bytes, except_socket: SocketId | None, version: int = 0
    ) -> Delivery | None:
        """The frame to this node's subscribers of the channel, but held for those whose join is in flight; a
        ``subscription_count`` (``version`` > 0) older than a change this node knows of goes nowhere."""
        sockets = self.index.sockets(app_id, channel)
        if not sockets or (version and not self.index.counted(app_id, channel, version)):
            return None
        waiting = self._joining.get((app_id, channel)) if self._joining else None
        if not waiting:
            return await LocalSender.broadcast(self, app_id, sockets, frame, except_socket)
        held = 0
        for socket_id, frames in waiting.items():
            if socket_id in sockets and socket_id != except_socket:
                frames.append((frame, version))
                held += 1
        others = [s for s in sockets if s not in waiting]
        local = await LocalSender.broadcast(self, app_id, others, frame, except_socket)
        return Delivery(sent=local.sent + held, gone=local.gone)

    # -- routing ---------------------------------------------------------------------------------------

    async def _locate(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> dict[str, list[SocketId]]:
        """Group sockets by the node holding them; key ``""`` collects sockets no node holds (gone)."""
        groups: dict[str, list[SocketId]] = {}
        unknown: list[SocketId] = []
        routes = self._routes
        for socket_id in socket_ids:
            node = routes.get(socket_id)
            if node is None:
                unknown.append(socket_id)
            else:
                groups.setdefault(node, []).append(socket_id)
        if unknown:
            nodes = await self.locator.socket_nodes(app_id, unknown)
            for socket_id, node in zip(unknown, nodes, strict=True):
                if node is None:
                    groups.setdefault("", []).append(socket_id)
                    continue
                routes[socket_id] = node
                groups.setdefault(node, []).append(socket_id)
            while len(routes) > _ROUTE_CACHE_SIZE:
                routes.popitem(last=False)
        # A socket recorded on this node that the node does not hold any more is gone, not remote.
        gone = self._unreleased(groups.pop(self.node_id, []))
        if gone:
            groups.setdefault("", []).extend(gone)
        return groups

    async def _publish(self, messages: dict[str, bytes], *, wait: bool = True) -> None:
        """Send one message to each of these nodes; raises what the send raised. With ``wait=False`` it
        returns once the messages are queued (failures are logged and counted by the batch), unless many
        batches are already waiting for Redis: then it waits, so a slow Redis slows the publishers instead
        of growing the queue.

        Messages queued during one event-loop iteration go out together at the start of the next, one pub/sub
        message per node (``M``: several length-prefixed messages) and one pipelined round trip for all
        nodes, one batch at a time and in order. A redis-py command costs ~100 µs of CPU here, as much as
        50 socket writes: under load many events share it, and the receiving node handles a batch in one go,
        so its cork coalesces those events' frames per socket as a single node would.
        """
        batch = self._outbox_put(messages)
        if wait or len(self._batches) > _MAX_BATCHES_IN_FLIGHT:
            # Shielded: a caller cancelled while waiting must not cancel the batch the others wait for.
            await asyncio.shield(batch)

    def _outbox_put(self, messages: dict[str, bytes]) -> asyncio.Future[None]:
        outbox = self._outbox
        batch = self._batch
        if not outbox or batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            loop.call_soon(self._send_outbox, batch)
        for node, message in messages.items():
            outbox.setdefault(node, []).append(message)
        return batch

    def _send_outbox(self, batch: asyncio.Future[None]) -> None:
        outbox, self._outbox = self._outbox, {}
        batch.add_done_callback(_retrieve)  # nobody may be waiting any more (cancelled callers)
        task = asyncio.get_running_loop().create_task(self._send_batch(outbox, batch))
        self._batches.add(task)
        self._in_flight[task] = self.clock()  # a hung Redis shows here first (see can_take)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._in_flight.pop(task, None)

    async def _send_batch(self, outbox: dict[str, list[bytes]], batch: asyncio.Future[None]) -> None:
        try:
            async with self._sending:  # FIFO: batches reach Redis in the order they were made
                await self._send_in_turn(outbox)
        except asyncio.CancelledError:
            batch.cancel()
            raise
        except Exception as exc:
            # Callers that did not wait (channel broadcasts) learn of it only here: log it either way.
            if isinstance(exc, (RedisError, OSError)):
                self._failed("publish", exc)
            else:
                log.exception("cluster publish failed")
            if not batch.done():
                batch.set_exception(exc)
        else:
            if not batch.done():
                batch.set_result(None)

    async def _send_in_turn(self, outbox: dict[str, list[bytes]]) -> None:
        """Publish one batch; channel broadcasts (``C``) no receiver took go to the peer's replay buffer."""
        payloads: dict[str, list[bytes]] = {}
        for node, queued in outbox.items():
            if self.bus_down or node in self._pending:
                # Behind what the peer's buffer holds (order), or Redis is known to be down: buffer them.
                replay = [m for m in queued if m[:1] == b"S"]
                if replay:
                    self._hold(node, replay)
                queued = [m for m in queued if m[:1] != b"S"]
            if queued:
                payloads[node] = queued
        if not payloads:
            return
        try:
            received = await self._publish_now({n: q[0] if len(q) == 1 else _batched(q) for n, q in payloads.items()})
        except (RedisError, OSError):
            self.bus_down = True
            for node, queued in payloads.items():
                if replay := [m for m in queued if m[:1] == b"S"]:
                    self._hold(node, replay)
            raise
        for node, queued in payloads.items():
            if received.get(node):
                if node not in self._pending:
                    self._stalled.pop(node, None)
            elif replay := [m for m in queued if m[:1] == b"S"]:
                self._hold(node, replay)  # the peer is not subscribed right now (reconnecting, or dead)

    async def _publish_now(self, messages: dict[str, bytes]) -> dict[str, int]:
        """One message per node; several nodes share one round trip (a pipeline). Returns how many
        subscribers each node's channel had (0: nobody took the message)."""
        if len(messages) == 1:
            ((node, message),) = messages.items()
            channel = self.keys.node_channel(node)
            count = await (
                self.client.spublish(channel, message) if self.sharded else self.client.publish(channel, message)
            )
            received = {node: int(count or 0)}
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                for node, message in messages.items():
                    channel = self.keys.node_channel(node)
                    if self.sharded:
                        pipe.spublish(channel, message)
                    else:
                        pipe.publish(channel, message)
                counts = await pipe.execute()
            received = {node: int(c or 0) for node, c in zip(messages, counts, strict=True)}
        self.published += len(messages)
        return received

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_SECONDS:
            self._last_log = now
            log.error("cluster %s failed (%d errors so far): %s", what, self.errors, exc)

    # -- Sender ----------------------------------------------------------------------------------------

    async def send(self, app_id: AppId, socket_id: SocketId, frame: bytes) -> bool:
        if await super().send(app_id, socket_id, frame):
            return True
        delivery = await self._remote(app_id, [socket_id], frame)
        return delivery.sent == 1 or delivery.failed == 1

    async def broadcast(
        self, app_id: AppId, socket_ids: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        local = await super().broadcast(app_id, socket_ids, frame, except_socket)
        if not local.gone:
            return local
        elsewhere = self._unreleased(local.gone)
        if not elsewhere:
            return Delivery(sent=local.sent)
        remote = await self._remote(app_id, elsewhere, frame)
        return Delivery(sent=local.sent + remote.sent, gone=remote.gone, failed=remote.failed)

    async def broadcast_channel(
        self,
        app_id: AppId,
        channel: ChannelName,
        frame: bytes,
        except_socket: SocketId | None = None,
        *,
        version: int = 0,
    ) -> Delivery:
        """Write this node's subscribers of ``channel`` and have every peer write its own (see the module
        docstring). ``sent`` counts this node's writes; each peer counts its own (``PeerEvents.relayed``).
        ``version``: the frame is a ``subscription_count`` as of that change (``JoinResult.version``)."""
        peers = self.peers
        head = f"{app_id}\n{channel}\n{except_socket or ''}\n{version or ''}\n".encode()
        if peers and not self.can_take((len(head) + len(frame) + 64) * len(peers)):
            # Refused before any local write: the caller's retry (a REST publish answered 503) duplicates nothing.
            self.refused += 1
            raise StoreUnavailable("cluster bus unavailable: the replay buffer cannot take more")
        local = await self._to_own_subscribers(app_id, channel, frame, except_socket, version)
        # Sockets in the index but no longer registered are closing: their removal is already under way.
        sent = local.sent if local is not None else 0
        if not peers:
            return Delivery(sent=sent)
        # Not awaited: batches go out in order, so the peers still get this node's events in order, and a
        # REST publish or a client event need not wait a Redis round trip. What no peer took is replayed.
        # Numbered here, with no await before it is queued, so numbers follow the order of the queue: a peer
        # drops a number it has already passed (a replayed batch that Redis also ran), see handle_message.
        self._seq += 1
        message = b"S" + f"{self.node_id}\n{self._seq}\n".encode() + head + frame
        batch = self._queue(dict.fromkeys(peers, message))
        if batch is not None and len(self._batches) > _MAX_BATCHES_IN_FLIGHT:
            # Redis is slower than the publishers: slow them down, but never for longer than BACKPRESSURE_WAIT
            # (a hung Redis must not hold a REST publish; what it cannot take now is replayed).
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                await asyncio.wait_for(asyncio.shield(batch), BACKPRESSURE_WAIT)
        return Delivery(sent=sent)

    # -- replay buffer ---------------------------------------------------------------------------------

    def can_take(self, nbytes: int) -> bool:
        """Whether the replay buffer can promise delivery of ``nbytes`` more: under its size bound, no peer
        stalled (not taking what it is sent) and no batch waiting for Redis for ``replay_seconds`` or longer
        (then the outage is longer than promised)."""
        since = [*self._stalled.values(), *self._in_flight.values()]
        if not since:
            return True
        if self.pending_bytes + nbytes > self.replay_bytes:
            return False
        return self.clock() - min(since) < self.replay_seconds

    def _queue(self, messages: dict[str, bytes]) -> asyncio.Future[None] | None:
        """A channel broadcast for these peers: into the outbox (its batch is returned), or behind what their
        buffer already holds."""
        direct: dict[str, bytes] = {}
        for node, message in messages.items():
            if self.bus_down or node in self._pending:
                self._hold(node, [message])
            else:
                direct[node] = message
        return self._outbox_put(direct) if direct else None

    def _hold(self, node: str, messages: Sequence[bytes], at: float | None = None) -> None:
        queue = self._pending.get(node)
        if queue is None:
            queue = self._pending[node] = deque()
        when = self.clock() if at is None else at
        self._stalled.setdefault(node, when)
        for message in messages:
            number = _number(message)
            place = len(queue)
            # A broadcast that waited in an outbox batch while later ones were held directly (the bus went down
            # meanwhile) goes before them: the peer would drop it as a duplicate once it has had a later number.
            while place and _number(queue[place - 1][1]) > number:
                place -= 1
            queue.insert(place, (when, message))
            self.pending_bytes += len(message)
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay(), name="cluster-replay")

    def _expire(self) -> None:
        """Drop what is older than the bound or meant for a node that left the cluster.

        Only the first is a loss worth an ERROR: subscribers on a live peer miss those events. A node that left
        (killed, reaped by its lease) has no sockets any more, so what was meant for it reaches nobody anyway."""
        expired = left = 0
        horizon = self.clock() - self.replay_seconds
        for node in list(self._pending):
            queue = self._pending[node]
            gone = node not in self.peers
            while queue and (gone or queue[0][0] < horizon):
                _, message = queue.popleft()
                self.pending_bytes -= len(message)
                self.dropped += 1
                if gone:
                    left += 1
                else:
                    expired += 1
            if not queue:
                del self._pending[node]
            if gone:
                self._stalled.pop(node, None)
        for node in [n for n in self._stalled if n not in self.peers]:
            del self._stalled[node]
        if expired:
            replay_log.error(
                "cluster:replay",
                "cluster: %d broadcast(s) older than %.0f s dropped from the replay buffer (%d so far): a peer's "
                "subscribers missed them",
                expired,
                self.replay_seconds,
                self.dropped,
            )
        if left:
            replay_log.info(
                "cluster:replay-left",
                "cluster: %d broadcast(s) for a node that left the cluster dropped from the replay buffer",
                left,
            )

    async def _replay(self) -> None:
        """Publish the buffered broadcasts, oldest first, until every peer's buffer is empty."""
        while self._pending:
            await asyncio.sleep(REPLAY_INTERVAL)
            async with self._sending:
                self._expire()
                chunks: dict[str, tuple[int, bytes]] = {}
                for node, queue in self._pending.items():
                    taken = size = 0
                    while taken < len(queue) and (taken == 0 or size + len(queue[taken][1]) <= _REPLAY_CHUNK):
                        size += len(queue[taken][1])
                        taken += 1
                    batch = [queue[i][1] for i in range(taken)]
                    chunks[node] = (taken, batch[0] if taken == 1 else _batched(batch))
                if not chunks:
                    continue
                try:
                    received = await self._publish_now({node: body for node, (_, body) in chunks.items()})
                except (RedisError, OSError) as exc:
                    raise_if_cancelling(exc)
                    self.bus_down = True
                    self._failed("replay", exc)
                    continue
                self.bus_down = False
                for node, (taken, _) in chunks.items():
                    if not received.get(node):
                        continue  # the peer is not listening (yet): next round
                    queue = self._pending[node]
                    for _ in range(taken):
                        self.pending_bytes -= len(queue.popleft()[1])
                    if not queue:
                        del self._pending[node]
                        self._stalled.pop(node, None)

    async def announce(self) -> None:
        """Tell the peers this node exists, so their channel broadcasts include it from now on."""
        if self.peers:
            await self._publish(dict.fromkeys(self.peers, b"H" + self.node_id.encode()))

    async def _remote(self, app_id: AppId, socket_ids: Sequence[SocketId], frame: bytes) -> Delivery:
        """Never raises: with Redis down, local sockets keep getting frames and the rest count as failed."""
        try:
            groups = await self._locate(app_id, socket_ids)
        except StoreUnavailable as exc:
            self._failed("routing lookup", exc)
            return Delivery(sent=0, failed=len(socket_ids))
        gone = tuple(groups.pop("", ()))
        if not groups:
            return Delivery(sent=0, gone=gone)
        head = b"B" + app_id.encode() + b"\n"
        messages = {node: head + ",".join(ids).encode() + b"\n" + frame for node, ids in groups.items()}
        sent = sum(len(ids) for ids in groups.values())
        try:
            await self._publish(messages)
        except (RedisError, OSError):  # counted and logged by the batch
            return Delivery(sent=0, gone=gone, failed=sent)
        return Delivery(sent=sent, gone=gone)

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        if self.holds(socket_id):
            await super().disconnect(app_id, socket_id, code, reason)
            return
        try:
            groups = await self._locate(app_id, [socket_id])
        except (StoreUnavailable, RedisError, OSError) as exc:
            self._failed("disconnect routing", exc)
            return
        groups.pop("", None)
        if groups:
            message = b"D" + f"{app_id}\n{socket_id}\n{code}\n{reason}".encode()
            with contextlib.suppress(RedisError, OSError):  # counted and logged by the batch
                await self._publish(dict.fromkeys(groups, message))

    # -- receiving -------------------------------------------------------------------------------------

    async def handle_message(self, data: bytes, events: PeerEvents) -> None:
        """Deliver one message a peer published to this node's channel."""
        kind, body = data[:1], data[1:]
        if kind == b"M":
            for message in _unbatched(body):
                await self.handle_message(message, events)
        elif kind == b"B":
            app, ids, frame = body.split(b"\n", 2)
            app_id = AppId(app.decode())
            socket_ids = [SocketId(s) for s in ids.decode().split(",")]
            delivery = await LocalSender.broadcast(self, app_id, socket_ids, frame)
            self.relayed += delivery.sent
            gone = self._unreleased(delivery.gone)
            if gone:
                # Removed once, in the background: the listener must keep delivering meanwhile.
                self._release(gone)
                task = asyncio.create_task(events.gone(app_id, gone))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
        elif kind == b"S":
            sender, seq, rest = body.split(b"\n", 2)
            origin, number = sender.decode(), int(seq)
            if number <= self._seen.get(origin, 0):
                self.duplicates += 1  # replayed after Redis also ran the original: delivered already
                return
            self._seen[origin] = number
            await self.handle_message(b"C" + rest, events)
        elif kind == b"C":
            app, channel, skip, version, frame = body.split(b"\n", 4)
            app_id = AppId(app.decode())
            except_socket = SocketId(skip.decode()) if skip else None
            relayed = await self._to_own_subscribers(
                app_id, ChannelName(channel.decode()), frame, except_socket, int(version or 0)
            )
            if relayed is not None:
                self.relayed += relayed.sent
                if relayed.sent:
                    events.relayed(app_id, relayed.sent, relayed.sent * len(frame))
        elif kind == b"H":
            node = body.decode()
            if node != self.node_id:
                self.peers.add(node)
        elif kind == b"D":
            app_name, socket, code, reason = body.decode().split("\n", 3)
            await LocalSender.disconnect(self, AppId(app_name), SocketId(socket), int(code), reason)
        else:
            log.warning("cluster: unknown message kind %r ignored", kind)

    async def listen(self, events: PeerEvents, *, sharded: bool = True) -> None:
        """Subscribe to this node's channel and deliver what arrives, forever; reconnects with backoff.

        ``sharded``: whether Redis has sharded pub/sub (7.0 and later); publishing uses the same. After a
        reconnect, ``events.resubscribed`` runs: messages published while the node was cut off are lost
        (pub/sub keeps nothing), and the cluster re-checks the node's state against the store.
        """
        self.sharded = sharded
        backoff = 0.1
        first = True
        while True:
            pubsub = self.client.pubsub()
            try:
                if self.sharded:
                    await pubsub.ssubscribe(self.channel)
                else:
                    await pubsub.subscribe(self.channel)
                self.listening = True
                backoff = 0.1
                if not first:
                    await events.resubscribed()
                first = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    raise_if_cancelling()
                    if message is None or message.get("type") not in ("message", "smessage"):
                        continue
                    try:
                        await self.handle_message(message["data"], events)
                    except (ValueError, UnicodeDecodeError) as exc:
                        log.warning("cluster: malformed message ignored: %s", exc)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, StoreUnavailable) as exc:
                raise_if_cancelling(exc)
                self.listening = False
                self._failed("pub/sub listener", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.listening = False
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]

    async def subscribed(self) -> bool:
        """Whether the Redis this node talks to now has a subscriber on the node's channel: its listener, on this
        very Redis (``listening`` may still be true of a connection to a Redis that restarted). Raises what the
        client raises."""
        if self.sharded:
            counts = await self.client.pubsub_shardnumsub(self.channel)
        else:
            counts = await self.client.pubsub_numsub(self.channel)
        return any(int(count) > 0 for _, count in counts)

    async def check_health(self) -> bool:
        return self.listening
