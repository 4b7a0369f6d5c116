"""One local-server process as a node of a Redis-backed cluster: lease, reaper, reconciliation, pub/sub listener.

- **Lease**: ``<prefix>:lease:<node>`` with a TTL of half ``store.lease_seconds``, refreshed every third of
  that TTL. ``lease_seconds`` is the promise to users: a dead node's connections are gone within it (TTL
  expiry + one reaper period + the confirmation period ≈ 0.83 of it). ``<prefix>:nodes`` lists the nodes,
  so peers can find one whose lease is gone.
- **Reaper**: every twelfth of ``lease_seconds``, each node looks for nodes without a lease; one of them (lock
  ``<prefix>:reap:<node>``) removes the dead node's connections through ``engine.disconnect``, so its
  presence members are removed with ``member_removed`` frames and webhooks. The store's scripts make
  each removal happen once even if two reapers overlap.
- **Reconciliation** (periodically, and whenever Redis comes back): sockets the store records on this
  node that the node no longer holds (they closed while Redis was down) are removed the same way;
  sockets the node holds that the store lost (Redis restarted empty, or peers reaped this node during
  a partition) are closed with 4200 so their clients reconnect and subscribe again. Either way the
  store converges on what the sockets really are.
- **TTL refresh**: the keys of the node's live sockets get their TTL back every ``ttl_seconds / 4``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.engine.core import Engine
from shared.errors import StoreUnavailable
from shared.limits.base import RateLimiter
from shared.redis.errors import CountsErrors, raise_if_cancelling
from shared.redis.keys import RedisKeys
from shared.redis.node_index import NodeIndex
from shared.redis.nodes import RedisNodeRegistry
from shared.sender.redis import RedisSender
from shared.services import DriverError
from shared.settings import StoreSettings
from shared.store.redis import RedisChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from shared.webhooks.base import WebhookQueue

log = logging.getLogger("sockless.cluster")

# A socket the store records here but the node does not hold is left alone this long after it
# connected: the store records a connection a moment before the server registers its socket.
ORPHAN_GRACE = 3.0
RECONCILE_EVERY_SECONDS = 30.0
# Sockets the store lost are closed only this long after the node's pub/sub is back: peers replay the
# broadcasts they kept for this node every 0.2 s (shared/sender/redis.py), and those come first.
REPLAY_GRACE = 1.0
# How long sockets the store lost wait for the node's pub/sub to come back before they are closed anyway: the
# listener's longest backoff between two attempts (5 s, shared/sender/redis.py) and a margin.
LISTENER_BACK_SECONDS = 6.0
REAP_CONCURRENCY = 32
STOP_TIMEOUT_SECONDS = 5.0
_BACKEND_ERRORS = (RedisError, OSError, StoreUnavailable)


def default_node_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:32] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterNode:
    """Runs one node's background tasks over the drivers the runtime built for it (local_server/runtime.py):
    the node's Redis client, its registry, its subscription index, the store and sender that share them, and
    the engine over them."""

    def __init__(
        self,
        settings: StoreSettings,
        *,
        client: Redis,
        registry: RedisNodeRegistry,
        index: NodeIndex,
        store: RedisChannelStore,
        sender: RedisSender,
        engine: Engine,
    ) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.prefix)
        self.node_id = registry.node_id
        self.lease_seconds = settings.lease_seconds
        # The lease key lives half the promised removal time; three missed heartbeats still keep it alive.
        self.lease_ttl = self.lease_seconds / 2
        self.client = client
        self.registry = registry
        self.index = index
        self.store = store
        self.sender = sender
        self.engine = engine
        self.errors = 0
        self.reaped = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._held_since: float | None = None  # since when this node has held its lease without a gap
        self._missing: dict[str, float] = {}  # peers seen without a lease, since when
        self._deferred = 0  # orphan candidates too young to judge at the last reconciliation
        self._last_log = 0.0
        self._reconcile_now = asyncio.Event()
        self._listening_again = asyncio.Event()  # set when the listener is back after an outage
        self._run_id = ""  # Redis's run_id: a new one means Redis restarted (empty, unless it persists)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check Redis (an unreachable store fails start-up loudly), take the lease, start the tasks."""
        try:
            await self.client.ping()
            info = await self.client.info("server")
        except _BACKEND_ERRORS as exc:
            raise DriverError(f"redis store unreachable at start-up: {exc}") from exc
        version = tuple(int(p) for p in str(info.get("redis_version", "7.0.0")).split(".")[:2])
        self._run_id = str(info.get("run_id", ""))
        await self._beat()
        self._tasks = [
            # Sharded pub/sub (SPUBLISH/SSUBSCRIBE) arrived in Redis 7.0.
            asyncio.create_task(self.sender.listen(self, sharded=version >= (7, 0)), name="cluster-listen"),
            asyncio.create_task(self._every(self.lease_ttl / 3, self._beat), name="cluster-heartbeat"),
            asyncio.create_task(self._every(self.lease_ttl / 6, self._reap_dead), name="cluster-reaper"),
            asyncio.create_task(self._maintain(), name="cluster-maintenance"),
        ]
        # Before the server accepts sockets: listening, so nothing published to this node is lost, and
        # announced, so every peer's channel broadcasts include this node from its first subscriber on.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while not self.sender.listening and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        try:
            await self.sender.announce()
        except _BACKEND_ERRORS as exc:
            self._failed("announce", exc)
        log.info("cluster node %s joined (lease %.1fs, sharded pub/sub: %s)", self.node_id, self.lease_seconds, version)

    async def stop(self) -> None:
        """Stop the tasks and give the lease up, so peers clean up whatever this node left behind at once."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that swallowed its cancellation must not keep the process from exiting.
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in stuck:
                log.error("cluster task %s did not stop", task.get_name())
        self._tasks = []
        with contextlib.suppress(*_BACKEND_ERRORS):
            await self.client.delete(self.keys.lease(self.node_id))

    # -- loops -----------------------------------------------------------------------------------------

    def _failed(self, what: str, exc: BaseException) -> None:
        raise_if_cancelling(exc)
        self.errors += 1
        self._held_since = None
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.error("cluster %s failed (%d errors so far): %s", what, self.errors, exc)

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except _BACKEND_ERRORS as exc:
                self._failed(step.__name__.strip("_"), exc)
            raise_if_cancelling()

    async def _beat(self) -> None:
        lease_ms = int(self.lease_ttl * 1000)
        refreshed = await self.client.set(self.keys.lease(self.node_id), str(time.time()), px=lease_ms, xx=True)
        if not refreshed:
            # Our lease lapsed (Redis restarted empty, or this node stalled): a gap, so the nodes set may lack
            # peers that have not re-registered yet, and _refresh_peers must keep the ones it knew.
            self._held_since = None
            await self.client.set(self.keys.lease(self.node_id), str(time.time()), px=lease_ms)
        await self.client.sadd(self.keys.nodes, self.node_id)
        await self._refresh_peers()
        await self.registry.remember_apps()
        if self._held_since is None:
            # Our own lease lapsed, or we were cut off: peers may have reaped us, and until we have held
            # the lease for a full term again we cannot tell a dead peer from a partition or a stalled Redis.
            if self._tasks:
                log.warning("cluster node %s was cut off or lost its lease; reconciling", self.node_id)
                self._reconcile_now.set()
            self._held_since = time.monotonic()

    async def _registered_nodes(self) -> set[str]:
        return {n.decode() if isinstance(n, bytes) else n for n in await self.client.smembers(self.keys.nodes)}

    async def _refresh_peers(self) -> None:
        """The nodes channel broadcasts go to: every registered node but this one, until reaped (a message
        to a dead node's channel reaches no one)."""
        nodes = await self._registered_nodes()
        nodes.discard(self.node_id)
        held = self._held_since
        if held is None or time.monotonic() - held < self.lease_ttl:
            # Redis may have restarted empty (this node's own lease lapsed): peers re-register within a
            # heartbeat, and until then the list is incomplete. Keep the peers known so far meanwhile, so their
            # broadcasts are still published, or kept for replay (shared/sender/redis.py).
            nodes |= self.sender.peers
        self.sender.peers = nodes

    # -- what peers report (PeerEvents, shared/sender/redis.py) ----------------------------------------

    async def resubscribed(self) -> None:
        """Back on pub/sub after an outage: announcements may have been missed, and so may frames. The outage is
        a gap in the lease too: Redis may have restarted empty before a heartbeat noticed, and the peers it
        lists now may not have re-registered yet (see _refresh_peers)."""
        self._held_since = None
        self._listening_again.set()
        with contextlib.suppress(*_BACKEND_ERRORS):
            await self._refresh_peers()
        self._reconcile_now.set()

    def relayed(self, app_id: AppId, frames: int, nbytes: int) -> None:
        self.engine.count_sent(app_id, frames, nbytes)

    async def gone(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> None:
        """A peer routed frames here for sockets this node does not hold: remove them like a disconnect."""
        app = await self.engine.apps.by_id(app_id)
        if app is None:
            return
        try:
            await self.engine.drop_gone(app, socket_ids)
        except _BACKEND_ERRORS as exc:
            self._failed("cleanup of gone sockets", exc)

    async def _maintain(self) -> None:
        ttl = self.settings.ttl_seconds
        touch_every = ttl / 4 if ttl > 0 else None
        last_touch = time.monotonic()
        wait = RECONCILE_EVERY_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_now.wait(), wait)
            self._reconcile_now.clear()
            wait = RECONCILE_EVERY_SECONDS
            try:
                await self.reconcile()
                if self._deferred:
                    wait = ORPHAN_GRACE  # look again once the deferred sockets are old enough
                if touch_every is not None and time.monotonic() - last_touch >= touch_every:
                    await self.touch()
                    last_touch = time.monotonic()
            except _BACKEND_ERRORS as exc:
                self._failed("reconcile", exc)
            raise_if_cancelling()

    # -- reaping ---------------------------------------------------------------------------------------

    async def _reap_dead(self) -> None:
        """Reap nodes whose lease is gone, once sure: this node has held its own lease for a full term
        (after an outage every lease may have lapsed together), and the peer stayed without a lease for
        a heartbeat interval (a peer that was cut off renews within one)."""
        now = time.monotonic()
        if self._held_since is None or now - self._held_since < self.lease_ttl:
            self._missing.clear()
            return
        nodes = await self._registered_nodes()
        self._missing = {node: since for node, since in self._missing.items() if node in nodes}
        for node in sorted(nodes - {self.node_id}):
            if await self.client.exists(self.keys.lease(node)):
                self._missing.pop(node, None)
                continue
            if now - self._missing.setdefault(node, now) < self.lease_ttl / 3:
                continue
            lock = self.keys.reap_lock(node)
            if not await self.client.set(lock, self.node_id, nx=True, px=int(self.lease_seconds * 3000)):
                continue
            try:
                await self.reap(node)
                self._missing.pop(node, None)
            finally:
                with contextlib.suppress(*_BACKEND_ERRORS):
                    await self.client.delete(lock)

    async def reap(self, node: str) -> int:
        """Remove every connection of a dead node, with the same effects as their clients disconnecting."""
        removed = 0
        for app_id in sorted(await self.registry.apps_of_node(node)):
            sockets = sorted(await self.registry.node_sockets(app_id, node))
            removed += await self._disconnect_all(app_id, sockets)
            await self.registry.forget_node(node, app_id)
        await self.registry.forget_node(node)
        if not await self.client.exists(self.keys.lease(node)):
            await self.client.srem(self.keys.nodes, node)
        self.reaped += removed
        log.info("cluster: reaped node %s (%d connections)", node, removed)
        return removed

    async def _disconnect_all(self, app_id: AppId, sockets: Sequence[SocketId]) -> int:
        engine = self.engine
        app = await engine.apps.by_id(app_id)
        semaphore = asyncio.Semaphore(REAP_CONCURRENCY)

        async def one(socket_id: SocketId) -> None:
            async with semaphore:
                if app is not None:
                    await engine.disconnect(app, socket_id)
                else:
                    await self.store.remove_connection(app_id, socket_id)

        await asyncio.gather(*(one(s) for s in sockets))
        return len(sockets)

    # -- reconciliation --------------------------------------------------------------------------------

    async def reconcile(self) -> tuple[int, int]:
        """Make the store and this node's sockets agree; returns (orphans removed, sockets closed)."""
        restarted = await self._restarted()
        held = {socket_id for socket_id, _ in self.sender.transports()}  # before reading the store
        apps = self.registry.apps | await self.registry.apps_of_node(self.node_id)
        recorded: set[SocketId] = set()
        orphans_removed = 0
        self._deferred = 0
        now = time.time()
        for app_id in sorted(apps):
            stored = await self.registry.node_sockets(app_id, self.node_id)
            recorded |= stored
            candidates = sorted(stored - held - {s for s, _ in self.sender.transports()})
            if not candidates:
                continue
            since = await self.store.connected_since(app_id, candidates)
            orphans = [s for s, at in zip(candidates, since, strict=True) if at is not None and now - at > ORPHAN_GRACE]
            self._deferred += sum(1 for at in since if at is not None and now - at <= ORPHAN_GRACE)
            if orphans:
                orphans_removed += await self._disconnect_all(app_id, orphans)
        lost = [(s, t) for s, t in self.sender.transports() if s in held and s not in recorded]
        if lost:
            await self._replayed()
        if lost and restarted:
            await self._departed([socket_id for socket_id, _ in lost])
        for _socket_id, transport in lost:
            await transport.close(4200, "Cluster state lost, reconnect")
        if orphans_removed or lost:
            log.warning(
                "cluster: reconciled node %s: %d orphan connections removed, %d sockets closed for reconnect",
                self.node_id,
                orphans_removed,
                len(lost),
            )
        return orphans_removed, len(lost)

    async def _replayed(self) -> None:
        """Peers publish what they kept for this node (shared/sender/redis.py, replay) once it listens again:
        let that reach its sockets before they are closed for reconnecting. The store may be found lost before
        the listener is subscribed on the Redis that lost it (its backoff is longer than a heartbeat, and it
        may not have noticed a restart yet), so first wait for that, at most ``LISTENER_BACK_SECONDS``."""
        deadline = time.monotonic() + LISTENER_BACK_SECONDS
        while True:
            self._listening_again.clear()  # before asking, so a resubscription from here on wakes the wait
            remaining = deadline - time.monotonic()
            if remaining <= 0 or await self.sender.subscribed():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening_again.wait(), remaining)
        await asyncio.sleep(REPLAY_GRACE)

    async def _restarted(self) -> bool:
        """Whether Redis restarted since this node last looked (its run_id changed)."""
        run_id = str((await self.client.info("server")).get("run_id", ""))
        restarted, self._run_id = run_id != self._run_id, run_id
        return restarted

    async def _departed(self, sockets: Sequence[SocketId]) -> None:
        """Redis restarted empty: what these sockets held is gone from the store, without the webhooks a
        departure sends. Send them now (``member_removed``, ``channel_vacated``), delayed and debounced like any
        departure (shared/engine/emitter.py): clients that reconnect within ``webhooks.delay_seconds`` cancel
        them and their re-joins send nothing, and those that do not are reported gone. So a webhook receiver
        never sees ``member_added`` or ``channel_occupied`` twice without the matching removal between.
        Several nodes reporting the same channel or member are deduplicated the same way."""
        engine = self.engine
        members: dict[tuple[AppId, ChannelName, UserId], None] = {}
        channels: dict[tuple[AppId, ChannelName], None] = {}
        for socket_id in sockets:
            for app_id, channel, user_id in self.index.channels_of(socket_id):
                channels[(app_id, channel)] = None
                if user_id is not None:
                    members[(app_id, channel, user_id)] = None
        for app_id, channel, user_id in members:
            app = await engine.apps.by_id(app_id)
            if app is not None:
                await engine.webhooks.emit(app, "member_removed", channel, user_id=user_id)
        for app_id, channel in channels:
            app = await engine.apps.by_id(app_id)
            if app is not None:
                await engine.webhooks.emit(app, "channel_vacated", channel)

    async def touch(self) -> None:
        held = {socket_id for socket_id, _ in self.sender.transports()}
        for app_id in sorted(self.registry.apps):
            live = sorted(await self.registry.node_sockets(app_id, self.node_id) & held)
            await self.store.refresh_ttl(app_id, live)


class ClusterCollector(Collector):
    """Exports the node's counters on the local server's ``/metrics`` (read when scraped). ``queue`` and
    ``limiter``: the services' (their Redis errors are counted when they are the Redis drivers)."""

    def __init__(self, node: ClusterNode, *, queue: WebhookQueue, limiter: RateLimiter) -> None:
        self.node = node
        self.queue = queue
        self.limiter = limiter

    def collect(self) -> Iterator[Metric]:
        node, sender = self.node, self.node.sender
        errors = CounterMetricFamily(
            "sockless_redis_errors", "Redis operations that failed, by component", labels=["component"]
        )
        counts = {"store": node.store.errors, "registry": node.registry.errors, "sender": sender.errors}
        counts["cluster"] = node.errors
        for name, driver in (("queue", self.queue), ("limiter", self.limiter)):
            if isinstance(driver, CountsErrors):  # a memory queue or limiter has no Redis to fail
                counts[name] = driver.errors
        for name, count in counts.items():
            errors.add_metric([name], count)
        yield errors
        family: type[CounterMetricFamily | GaugeMetricFamily]
        for family, name, documentation, value in (
            (CounterMetricFamily, "messages_published", "Pub/sub messages sent to peer nodes", sender.published),
            (CounterMetricFamily, "frames_relayed", "Frames written to local sockets for peer nodes", sender.relayed),
            (CounterMetricFamily, "connections_reaped", "Connections of dead nodes removed by this node", node.reaped),
            (
                GaugeMetricFamily,
                "replay_bytes",
                "Bytes of channel broadcasts waiting to be published again to peers (Redis down or a peer away)",
                sender.pending_bytes,
            ),
            (
                CounterMetricFamily,
                "replay_dropped",
                "Channel broadcasts given up: older than store.replay_seconds, or for a node that left",
                sender.dropped,
            ),
            (
                CounterMetricFamily,
                "publishes_refused",
                "Channel broadcasts refused (503) because the replay buffer could not take them",
                sender.refused,
            ),
            (GaugeMetricFamily, "listening", "1 while subscribed to this node's pub/sub channel", sender.listening),
        ):
            yield family(f"sockless_cluster_{name}", documentation, value=value)
