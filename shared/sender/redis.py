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
``C<app>\\n<channel>\\n<except socket or empty>\\n<frame>`` (broadcast to a channel),
``D<app>\\n<id>\\n<code>\\n<reason>`` (disconnect) or ``H<node>`` (a node joined). App ids, socket ids and
channel names never contain ``\\n``; socket ids never ``,``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import StoreUnavailable
from shared.redis.errors import raise_if_cancelling
from shared.redis.keys import RedisKeys
from shared.sender.base import Delivery
from shared.sender.local import Fanout, LocalSender, write_each
from shared.types import AppId, ChannelName, SocketId

log = logging.getLogger("sockless.cluster")

# Called with sockets a peer routed here that this node does not hold (the engine cleans them up).
GoneHandler = Callable[[AppId, Sequence[SocketId]], Coroutine[Any, Any, None]]
# Called with the frames written here for a peer's channel broadcast: (app, frames, bytes), for metrics.
RelayedHandler = Callable[[AppId, int, int], None]


class ChannelIndex(Protocol):
    """This node's own subscribers of each channel, kept in process."""

    def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        """Exact for the sockets this node holds; read without awaiting in between (it changes as they
        subscribe and leave)."""
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


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class RedisSender(LocalSender):
    """A ``LocalSender`` (the server registers its sockets here) that routes everything else through Redis.

    ``index`` must be the one the node's store keeps (``RedisChannelStore(index=...)``). ``on_gone`` removes
    sockets a peer routed here that this node does not hold; ``on_resubscribed`` runs after the listener
    reconnects (see :meth:`listen`).
    """

    def __init__(
        self,
        client: Redis,
        *,
        node_id: str,
        index: ChannelIndex,
        locator: SocketLocator,
        prefix: str = "sockless",
        sharded: bool = True,
        fanout: Fanout = write_each,
        on_gone: GoneHandler | None = None,
        on_relayed: RelayedHandler | None = None,
        on_resubscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(fanout)
        self.client = client
        self.index = index
        self.locator = locator
        self.node_id = node_id
        self.keys = RedisKeys(prefix)
        self.sharded = sharded
        self.channel = self.keys.node_channel(node_id)
        self.on_gone = on_gone
        self.on_relayed = on_relayed
        self.on_resubscribed = on_resubscribed
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
        outbox = self._outbox
        batch = self._batch
        if not outbox or batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            loop.call_soon(self._send_outbox, batch)
        for node, message in messages.items():
            outbox.setdefault(node, []).append(message)
        if wait or len(self._batches) > _MAX_BATCHES_IN_FLIGHT:
            # Shielded: a caller cancelled while waiting must not cancel the batch the others wait for.
            await asyncio.shield(batch)

    def _send_outbox(self, batch: asyncio.Future[None]) -> None:
        outbox, self._outbox = self._outbox, {}
        batch.add_done_callback(_retrieve)  # nobody may be waiting any more (cancelled callers)
        task = asyncio.get_running_loop().create_task(self._send_batch(outbox, batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _send_batch(self, outbox: dict[str, list[bytes]], batch: asyncio.Future[None]) -> None:
        payloads = {node: queued[0] if len(queued) == 1 else _batched(queued) for node, queued in outbox.items()}
        try:
            async with self._sending:  # FIFO: batches reach Redis in the order they were made
                await self._publish_now(payloads)
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

    async def _publish_now(self, messages: dict[str, bytes]) -> None:
        """One message per node; several nodes share one round trip (a pipeline)."""
        if len(messages) == 1:
            ((node, message),) = messages.items()
            channel = self.keys.node_channel(node)
            await (self.client.spublish(channel, message) if self.sharded else self.client.publish(channel, message))
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                for node, message in messages.items():
                    channel = self.keys.node_channel(node)
                    if self.sharded:
                        pipe.spublish(channel, message)
                    else:
                        pipe.publish(channel, message)
                await pipe.execute()
        self.published += len(messages)

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
        self, app_id: AppId, channel: ChannelName, frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        """Write this node's subscribers of ``channel`` and have every peer write its own (see the module
        docstring). ``sent`` counts this node's writes; each peer counts its own (``on_relayed``)."""
        sockets = self.index.sockets(app_id, channel)
        local = await LocalSender.broadcast(self, app_id, sockets, frame, except_socket) if sockets else None
        # Sockets in the index but no longer registered are closing: their removal is already under way.
        sent = local.sent if local is not None else 0
        peers = self.peers
        if not peers:
            return Delivery(sent=sent)
        message = b"C" + f"{app_id}\n{channel}\n{except_socket or ''}\n".encode() + frame
        # Not awaited: batches go out in order, so the peers still get this node's events in order, and a
        # REST publish or a client event need not wait a Redis round trip (a failure is logged by the batch).
        await self._publish(dict.fromkeys(peers, message), wait=False)
        return Delivery(sent=sent)

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

    async def handle_message(self, data: bytes) -> None:
        """Deliver one message a peer published to this node's channel."""
        kind, body = data[:1], data[1:]
        if kind == b"M":
            for message in _unbatched(body):
                await self.handle_message(message)
        elif kind == b"B":
            app, ids, frame = body.split(b"\n", 2)
            app_id = AppId(app.decode())
            socket_ids = [SocketId(s) for s in ids.decode().split(",")]
            delivery = await LocalSender.broadcast(self, app_id, socket_ids, frame)
            self.relayed += delivery.sent
            gone = self._unreleased(delivery.gone)
            if gone and self.on_gone is not None:
                # Removed once, in the background: the listener must keep delivering meanwhile.
                self._release(gone)
                task = asyncio.create_task(self.on_gone(app_id, gone))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
        elif kind == b"C":
            app, channel, skip, frame = body.split(b"\n", 3)
            app_id = AppId(app.decode())
            sockets = self.index.sockets(app_id, ChannelName(channel.decode()))
            if sockets:
                except_socket = SocketId(skip.decode()) if skip else None
                delivery = await LocalSender.broadcast(self, app_id, sockets, frame, except_socket)
                self.relayed += delivery.sent
                if self.on_relayed is not None and delivery.sent:
                    self.on_relayed(app_id, delivery.sent, delivery.sent * len(frame))
        elif kind == b"H":
            node = body.decode()
            if node != self.node_id:
                self.peers.add(node)
        elif kind == b"D":
            app_name, socket, code, reason = body.decode().split("\n", 3)
            await LocalSender.disconnect(self, AppId(app_name), SocketId(socket), int(code), reason)
        else:
            log.warning("cluster: unknown message kind %r ignored", kind)

    async def listen(self) -> None:
        """Subscribe to this node's channel and deliver what arrives, forever; reconnects with backoff.

        After a reconnect, ``on_resubscribed`` runs: messages published while the node was cut off are
        lost (pub/sub keeps nothing), and the cluster re-checks the node's state against the store.
        """
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
                if not first and self.on_resubscribed is not None:
                    await self.on_resubscribed()
                first = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    raise_if_cancelling()
                    if message is None or message.get("type") not in ("message", "smessage"):
                        continue
                    try:
                        await self.handle_message(message["data"])
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

    async def check_health(self) -> bool:
        return self.listening
