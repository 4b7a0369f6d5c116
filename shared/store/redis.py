"""``RedisChannelStore``: the shared store of a local-server cluster and the ElastiCache store of the Lambda path.

Every decision the contract makes atomic (quota, occupied/vacated, member added/removed, online/offline)
is one Lua script (``shared/store/redis_scripts.py``), so it holds across processes and hosts. Reads are
single commands. Redis errors become ``StoreUnavailable``; nothing here retries or falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError, RedisError

from shared.errors import StoreUnavailable
from shared.store import redis_scripts as scripts
from shared.store.base import (
    CachedEvent,
    ChannelStats,
    Connection,
    Departure,
    JoinResult,
    LeaveResult,
    Member,
    PresenceFull,
    Subscription,
)
from shared.types import AppId, ChannelName, SocketId, UserId

log = logging.getLogger("sockless.redis")

DEFAULT_TTL_SECONDS = 86400
HEALTH_TIMEOUT_SECONDS = 1.0
MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 5.0
# What each connection reports with CLIENT SETINFO, built once: without it redis-py builds it per connection,
# reading the installed package's metadata from disk each time (~0.5 ms, blocking the event loop: a burst
# opening the pool's 64 connections stalled every socket of the node for ~30 ms).
DRIVER_INFO = DriverInfo()


class _ClusterClient(RedisCluster):
    """redis-py 8.1's async cluster client breaks commands issued concurrently before its first one has
    discovered the cluster (``'NoneType' object has no attribute 'writelines'``): the command policy lookup
    runs ahead of the locked initialization. Initializing first, under its lock, avoids that."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def connect_redis(url: str, *, cluster_mode: bool = False) -> Redis:
    """A lazily connecting client (nothing happens on the network until the first command).

    ``cluster_mode`` builds a cluster client, required by ElastiCache Serverless and Redis Cluster; it
    shares the command API of ``Redis``, which is the type the drivers are written against.
    """
    # Fail fast: one quick retry covers a pooled connection that died with a Redis restart; longer waits
    # would only hold client frames hostage during an outage (the callers degrade instead).
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 3.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        "driver_info": DRIVER_INFO,
    }
    if cluster_mode:
        return cast(Redis, _ClusterClient.from_url(url, max_connections=MAX_CONNECTIONS, **options))
    # A bounded pool whose callers wait for a free connection: a burst of subscribes must queue up,
    # not fail with "Too many connections" (the default pool's behaviour at 100).
    pool = BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **options)
    return Redis.from_pool(pool)


class BatchedScript:
    """A Lua script whose calls issued during one event-loop iteration reach Redis as one pipeline.

    A redis-py command costs ~90-100 µs of CPU here (pool, timeouts, packing, parsing, a socket write and a
    read); in a pipeline ~17 µs. Bursts are what a server sees — a reconnect storm's connects, a page load's
    subscribes — so the scripts on those paths share round trips, and a lone call still costs one.
    Same results and errors as calling the script: a reply error fails its own call only, a connection error
    every call of the batch (redis-py retries a pipeline once on a dropped connection, as it retries a
    command). A script Redis no longer knows (restarted, flushed) is run on its own, which loads it again.

    ``serial``: one batch in flight at a time; calls made meanwhile wait for it and go together in the next.
    Connections arrive one by one, not in the same iteration, so in a connect storm their batches stay small
    and each lone call pays the full price; waiting for the round trip in flight lets the batch grow with the
    load (10,000 connections over two nodes: CPU per connection 600-700 -> 400-560 µs, three A/B rounds).
    Not for the scripts whose latency the other clients see: a presence join waiting for the previous join's
    reply (which sits unread while the node writes member_added to everyone) raised the join p99 from 6-9 to
    12-25 ms.
    """

    def __init__(self, client: Redis, script: AsyncScript, *, serial: bool = False) -> None:
        self.client = client
        self.script = script
        self.serial = serial
        self._queue: list[tuple[Sequence[str], Sequence[str | int], asyncio.Future[Any]]] = []
        self._runs: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        loop = asyncio.get_running_loop()
        if not self._queue and not (self.serial and self._runs):
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((keys, args, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        if not queue:
            return
        task = asyncio.get_running_loop().create_task(self._run(queue))
        self._runs.add(task)
        task.add_done_callback(self._ran)

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        if not (self.serial and self._queue):
            return
        if task.cancelled():  # the store is closing: so are the calls that waited for this batch
            queue, self._queue = self._queue, []
            for _, _, future in queue:
                future.cancel()
            return
        self._flush()

    async def _run(self, queue: list[tuple[Sequence[str], Sequence[str | int], asyncio.Future[Any]]]) -> None:
        calls = [(keys, args, future) for keys, args, future in queue if not future.done()]
        if not calls:
            return
        try:
            if len(calls) == 1:
                ((keys, args, future),) = calls
                results: list[Any] = [await self.script(keys=keys, args=args)]
            else:
                async with self.client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in calls:
                        pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, future in calls:
                future.cancel()
            raise
        except Exception as exc:  # every waiting call fails with it (StoreUnavailable for Redis errors)
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (keys, args, future), result in zip(calls, results, strict=True):
            if future.done():
                continue
            if isinstance(result, NoScriptError):
                try:
                    result = await self.script(keys=keys, args=args)
                except Exception as exc:  # handed to the waiting call
                    result = exc
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def raise_if_cancelling(cause: BaseException | None = None) -> None:
    """Restore a cancellation a lower layer lost.

    On Python 3.11, redis-py's blocking pool waits on an ``asyncio.Condition`` that can swallow a
    cancellation arriving together with a notify, and redis-py can also surface one as a connection or
    timeout error. A loop that carried on would then never stop (and hang shutdown), so every Redis call
    here ends with this check: a task that was asked to stop stops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause


class CountsErrors:
    """Translates client errors into the project's ``StoreUnavailable`` (STYLE.md §5), counting them
    (the local server exports the count as ``sockless_redis_errors_total``)."""

    errors: int = 0

    @contextlib.contextmanager
    def unavailable(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise_if_cancelling(exc)
            self.errors += 1
            raise StoreUnavailable(f"redis {what} failed: {exc}") from exc
        raise_if_cancelling()

    async def ping(self, client: Redis) -> bool:
        """The drivers' ``check_health``: a PING answered within ``HEALTH_TIMEOUT_SECONDS``."""
        try:
            answered = bool(await asyncio.wait_for(client.ping(), HEALTH_TIMEOUT_SECONDS))
        except (RedisError, OSError) as exc:
            raise_if_cancelling(exc)
            self.errors += 1
            log.warning("redis health check failed: %s", exc or type(exc).__name__)
            return False
        raise_if_cancelling()
        return answered


def app_prefix(prefix: str, app_id: str) -> str:
    """``<prefix>:{<app_id>}:``: the hash tag keeps all of an app's keys in one cluster slot."""
    return f"{prefix}:{{{app_id}}}:"


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_INFO_CACHE_SIZE = 100_000
_MISSING = object()


class RedisChannelStore(CountsErrors):
    """See ``shared/store/redis_scripts.py`` for the key layout.

    ``node_id`` is set on the local server: each connection records the node that holds its socket, so
    broadcasts can be routed to it and a dead node's connections can be found and removed.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "sockless",
        node_id: str | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        owns_client: bool = False,
        clock: Callable[[], float] = time.time,
        track_local: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.node_id = node_id
        self.ttl_seconds = ttl_seconds
        self._owns_client = owns_client

        # The scripts of bursts (connects, subscribes, disconnects) share pipelines; on Redis Cluster each call
        # goes alone (its pipelines would split by slot anyway). Connects and disconnects also wait for the
        # batch in flight (``serial``): nobody watches their latency, and a storm's batches grow.
        def batched(source: str, serial: bool = False) -> AsyncScript | BatchedScript:
            script = client.register_script(source)
            return script if isinstance(client, RedisCluster) else BatchedScript(client, script, serial=serial)

        self._add = batched(scripts.ADD_CONNECTION, serial=True)
        self._sign_in = batched(scripts.SIGN_IN)
        self._remove = batched(scripts.REMOVE_CONNECTION, serial=True)
        self._subscribe = batched(scripts.SUBSCRIBE)
        self._unsubscribe = batched(scripts.UNSUBSCRIBE)
        self._channels = client.register_script(scripts.CHANNELS)
        self._online = client.register_script(scripts.ONLINE)
        self._seen = client.register_script(scripts.SEEN)
        self._refresh = client.register_script(scripts.REFRESH)
        self.node_apps: set[AppId] = set()  # apps this node has held sockets of (for its node registry)
        self._known_apps: set[AppId] = set()  # apps already in the global app list
        self._clock = clock
        # Decoded user_info by its stored JSON: a presence join sends the whole roster, and decoding every
        # member's info again for each join was most of a join's cost at a few hundred members. The values
        # are only encoded again, never mutated (as with the memory store's members).
        self._infos: dict[bytes | str, Any] = {}
        # ``track_local`` (a local-server node): the subscriptions of the sockets this process holds, kept in
        # process beside Redis. Only the node holding a socket subscribes, unsubscribes or disconnects it
        # (other callers remove sockets this index never had), so the index is exact for the node's own
        # sockets, and a broadcast reaches them without reading the channel's subscribers from Redis
        # (``RedisSender.broadcast_channel``). Changed before the Redis call: a socket that is leaving
        # gets nothing more, whatever Redis answers.
        self.track_local = track_local
        self._local: dict[tuple[AppId, ChannelName], set[SocketId]] = {}
        # socket -> its channels here, each with the member it joined as (presence), for client events
        self._local_of: dict[SocketId, dict[tuple[AppId, ChannelName], UserId | None]] = {}

    def _p(self, app_id: AppId) -> str:
        return app_prefix(self.prefix, app_id)

    # -- connections -----------------------------------------------------------------------------------

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        record: dict[str, str] = {"at": repr(connection.connected_at)}
        if self.node_id is not None:
            record["n"] = self.node_id
        if connection.connection_id is not None:
            record["c"] = connection.connection_id
        if connection.user_id is not None:
            record["u"] = connection.user_id
            record["d"] = connection.user_data or ""
            record["w"] = json.dumps(list(connection.watchlist))
        args: list[str | int] = [
            self.ttl_seconds,
            connection.socket_id,
            json.dumps(record),
            -1 if max_connections is None else max_connections,
            self.node_id or "",
            connection.connection_id or "",
            repr(self._clock()),
        ]
        app_id = connection.app_id
        with self.unavailable("add_connection"):
            added = await self._add(keys=[self._p(app_id)], args=args)
            if not added:
                return False
            # Keys outside the app's slot: separate commands, after the decision.
            if connection.connection_id is not None:
                await self.client.set(
                    self._cid_key(connection.connection_id),
                    f"{app_id}\n{connection.socket_id}",
                    ex=self.ttl_seconds or None,
                )
            if app_id not in self._known_apps:
                await self.client.sadd(f"{self.prefix}:apps", app_id)
                self._known_apps.add(app_id)
            if self.node_id is not None and app_id not in self.node_apps:
                await self.client.sadd(self.node_apps_key(self.node_id), app_id)
                self.node_apps.add(app_id)
        return True

    def _cid_key(self, connection_id: str) -> str:
        return f"{self.prefix}:cid:{connection_id}"

    def _connection(self, app_id: AppId, socket_id: SocketId, raw: bytes | str) -> Connection:
        record = json.loads(raw)
        watchlist = tuple(UserId(w) for w in json.loads(record["w"])) if "w" in record else ()
        return Connection(
            app_id=app_id,
            socket_id=socket_id,
            connected_at=float(record["at"]),
            user_id=UserId(record["u"]) if "u" in record else None,
            user_data=record.get("d"),
            watchlist=watchlist,
            connection_id=record.get("c"),
        )

    async def get_connection(self, app_id: AppId, socket_id: SocketId) -> Connection | None:
        with self.unavailable("get_connection"):
            raw = await self.client.hget(self._p(app_id) + "conns", socket_id)
        return None if raw is None else self._connection(app_id, socket_id, raw)

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        args: list[str | int] = [self.ttl_seconds, socket_id, user_id, user_data, json.dumps(list(watchlist))]
        with self.unavailable("sign_in"):
            result = await self._sign_in(keys=[self._p(app_id)], args=args)
        return int(result) == 1

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        if self.track_local:
            for key in self._local_of.pop(socket_id, ()):
                self._local_leave(key, socket_id)
        with self.unavailable("remove_connection"):
            result = await self._remove(keys=[self._p(app_id)], args=[self.ttl_seconds, socket_id])
        if result is None:
            return None
        raw, offline, left = result
        connection = self._connection(app_id, socket_id, raw)
        if connection.connection_id is not None:
            with self.unavailable("remove_connection"):
                await self.client.delete(self._cid_key(connection.connection_id))
        return Departure(
            connection=connection,
            left=tuple(self._leave_result(item) for item in left),
            user_offline=bool(offline),
        )

    # -- subscriptions ---------------------------------------------------------------------------------

    @staticmethod
    def _leave_result(item: Sequence[Any]) -> LeaveResult:
        channel, left, vacated, removed, count = item
        return LeaveResult(
            channel=ChannelName(_str(channel)),
            left=bool(left),
            vacated=bool(vacated),
            member_removed=UserId(_str(removed)) if removed else None,
            subscription_count=int(count) if left else 0,
        )

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        # Compact JSON: the stored text goes verbatim into every joiner's roster (see the SUBSCRIBE script).
        info = "" if member is None else json.dumps(member.user_info, separators=(",", ":"))
        user_id = "" if member is None else member.user_id
        args: list[str | int] = [self.ttl_seconds, socket_id, channel, user_id, info, max_members]
        if self.track_local:
            key = (app_id, channel)
            self._local.setdefault(key, set()).add(socket_id)
            # The first subscription's member stays (as in Redis) if this one turns out to be a repeat.
            self._local_of.setdefault(socket_id, {}).setdefault(key, member.user_id if member else None)
        with self.unavailable("subscribe"):
            result = await self._subscribe(keys=[self._p(app_id)], args=args)
        if int(result[0]) == -1:
            if self.track_local:
                self._local_forget(app_id, socket_id, channel)
            return PresenceFull(limit=max_members)
        joined, occupied, added, count = (int(x) for x in result[:4])
        return JoinResult(
            joined=bool(joined),
            occupied=bool(occupied),
            member_added=bool(added),
            subscription_count=count,
            presence_data=_str(result[4]) if len(result) > 4 else None,
        )

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        if self.track_local:
            self._local_forget(app_id, socket_id, channel)
        with self.unavailable("unsubscribe"):
            result = await self._unsubscribe(keys=[self._p(app_id)], args=[self.ttl_seconds, socket_id, channel])
        return self._leave_result(result)

    def local_sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        """This node's own subscribers of a channel (``track_local``); read it without awaiting in between."""
        return self._local.get((app_id, channel), ())

    def _local_forget(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        key = (app_id, channel)
        keys = self._local_of.get(socket_id)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._local_of[socket_id]
        self._local_leave(key, socket_id)

    def _local_leave(self, key: tuple[AppId, ChannelName], socket_id: SocketId) -> None:
        sockets = self._local.get(key)
        if sockets is not None:
            sockets.discard(socket_id)
            if not sockets:
                del self._local[key]

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        # A node's own socket (client events come from there): its index answers without a round trip.
        local = self._local_of.get(socket_id)
        if local is not None and (app_id, channel) in local:
            return Subscription(user_id=local[(app_id, channel)])
        with self.unavailable("subscription"):
            mark = await self.client.hget(self._p(app_id) + "ch:" + channel, socket_id)
        if mark is None:
            return None
        user = _str(mark)
        return Subscription(user_id=UserId(user[1:]) if user else None)

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        with self.unavailable("sockets"):
            keys = await self.client.hkeys(self._p(app_id) + "ch:" + channel)
        return [SocketId(_str(k)) for k in keys]

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        with self.unavailable("members"):
            raw = await self.client.hgetall(self._p(app_id) + "mi:" + channel)
        infos = self._infos
        if len(infos) > _INFO_CACHE_SIZE:
            infos.clear()
        out: dict[UserId, Any] = {}
        for k, v in raw.items():
            info = infos.get(v, _MISSING)
            if info is _MISSING:
                info = infos[v] = json.loads(v)
            out[UserId(_str(k))] = info
        return out

    @staticmethod
    def _stats(channel: str, count: int, members: int) -> ChannelStats:
        return ChannelStats(subscription_count=count, user_count=members if channel.startswith("presence-") else None)

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        with self.unavailable("channels"):
            flat = await self._channels(keys=[self._p(app_id)], args=[self.ttl_seconds, prefix])
        out: dict[ChannelName, ChannelStats] = {}
        for i in range(0, len(flat), 3):
            name = _str(flat[i])
            out[ChannelName(name)] = self._stats(name, int(flat[i + 1]), int(flat[i + 2]))
        return out

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        p = self._p(app_id)
        with self.unavailable("channel_stats"):
            count = await self.client.hlen(p + "ch:" + channel)
            members = await self.client.hlen(p + "mc:" + channel) if channel.startswith("presence-") else 0
        return self._stats(channel, int(count), int(members))

    # -- users -----------------------------------------------------------------------------------------

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        with self.unavailable("user_sockets"):
            members = await self.client.smembers(self._p(app_id) + "u:" + user_id)
        return [SocketId(_str(m)) for m in members]

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        with self.unavailable("watchers"):
            members = await self.client.smembers(self._p(app_id) + "w:" + user_id)
        return [SocketId(_str(m)) for m in members]

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        ids = list(user_ids)
        if not ids:
            return set()
        with self.unavailable("online"):
            found = await self._online(keys=[self._p(app_id)], args=[self.ttl_seconds, *ids])
        return {UserId(_str(u)) for u in found}

    async def connection_count(self, app_id: AppId) -> int:
        with self.unavailable("connection_count"):
            return int(await self.client.hlen(self._p(app_id) + "conns"))

    # -- cache channels --------------------------------------------------------------------------------

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None:
        with self.unavailable("cache_put"):
            await self.client.set(self._p(app_id) + "cache:" + channel, frame, px=max(int(ttl * 1000), 1))

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None:
        key = self._p(app_id) + "cache:" + channel
        with self.unavailable("cache_get"):
            frame = await self.client.get(key)
            left_ms = await self.client.pttl(key) if frame is not None else -2
        if frame is None or left_ms == -2:
            return None
        ttl = left_ms / 1000 if left_ms >= 0 else float(self.ttl_seconds)
        return CachedEvent(frame=frame if isinstance(frame, bytes) else frame.encode(), ttl=ttl)

    # -- nodes (local-server cluster) ------------------------------------------------------------------

    def node_apps_key(self, node_id: str) -> str:
        """The apps a node has held sockets of; a global key (one per node), outside any app's slot."""
        return f"{self.prefix}:nodeapps:{node_id}"

    async def apps_of_node(self, node_id: str) -> set[AppId]:
        with self.unavailable("apps_of_node"):
            members = await self.client.smembers(self.node_apps_key(node_id))
        return {AppId(_str(m)) for m in members}

    async def node_sockets(self, app_id: AppId, node_id: str) -> set[SocketId]:
        with self.unavailable("node_sockets"):
            members = await self.client.smembers(self._p(app_id) + "node:" + node_id)
        return {SocketId(_str(m)) for m in members}

    async def socket_nodes(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> list[str | None]:
        """The node holding each socket (``None``: not connected any more), in the order given."""
        with self.unavailable("socket_nodes"):
            nodes = await self.client.hmget(self._p(app_id) + "sn", list(socket_ids))
        return [None if n is None else _str(n) for n in nodes]

    async def connected_since(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> list[float | None]:
        """``connected_at`` of each socket (``None``: no such connection), in the order given."""
        with self.unavailable("connected_since"):
            records = await self.client.hmget(self._p(app_id) + "conns", list(socket_ids))
        return [None if r is None else float(json.loads(r)["at"]) for r in records]

    async def refresh_ttl(self, app_id: AppId, socket_ids: Sequence[SocketId], batch: int = 500) -> int:
        """Refresh the TTL of every key the given (live) sockets use; returns how many still exist."""
        alive = 0
        with self.unavailable("refresh_ttl"):
            for start in range(0, max(len(socket_ids), 1), batch):
                chunk = list(socket_ids[start : start + batch])
                args: list[str | int] = [self.ttl_seconds, self.node_id or "", *chunk]
                alive += int(await self._refresh(keys=[self._p(app_id)], args=args))
            if self.node_id is not None:
                await self.client.sadd(self.node_apps_key(self.node_id), app_id)
        return alive

    async def forget_node(self, node_id: str, app_id: AppId | None = None) -> None:
        """Drop a (dead, emptied) node's registry: its node set in ``app_id``, or its app list."""
        with self.unavailable("forget_node"):
            if app_id is not None:
                await self.client.delete(self._p(app_id) + "node:" + node_id)
            else:
                await self.client.delete(self.node_apps_key(node_id))

    # -- the Lambda path (functions/connections.py ConnectionMap, ApiGatewaySender's resolver) ------------

    async def socket_for_connection(self, connection_id: str) -> tuple[AppId, SocketId] | None:
        """The (app, socket) an API Gateway connectionId was recorded with (``$default``/``$disconnect``)."""
        with self.unavailable("socket_for_connection"):
            found = await self.client.get(self._cid_key(connection_id))
        if found is None:
            return None
        app_id, _, socket_id = _str(found).partition("\n")
        return AppId(app_id), SocketId(socket_id)

    async def connection_ids(self, app_id: AppId, socket_ids: Collection[SocketId]) -> dict[SocketId, str]:
        """connectionIds of sockets; sockets without one are absent from the result (they are gone)."""
        ids = list(dict.fromkeys(socket_ids))
        if not ids:
            return {}
        with self.unavailable("connection_ids"):
            found = await self.client.hmget(self._p(app_id) + "cid", ids)
        return {socket_id: _str(cid) for socket_id, cid in zip(ids, found, strict=True) if cid is not None}

    async def touch(self, app_id: AppId, socket_id: SocketId) -> bool:
        """Record a sign of life; ``False`` when the connection is gone."""
        with self.unavailable("touch"):
            seen = await self._seen(keys=[self._p(app_id)], args=[self.ttl_seconds, socket_id, repr(self._clock())])
        return bool(seen)

    async def stale_connections(self, silent_for: float, limit: int = 100) -> list[Connection]:
        """Connections with no sign of life (connect or :meth:`touch`) for ``silent_for`` seconds, oldest
        first; returned again until the caller removes or touches them."""
        cutoff = self._clock() - silent_for
        stale: list[Connection] = []
        with self.unavailable("stale_connections"):
            apps = sorted(AppId(_str(a)) for a in await self.client.smembers(f"{self.prefix}:apps"))
            for app_id in apps:
                p = self._p(app_id)
                ids = await self.client.zrangebyscore(p + "seen", "-inf", cutoff, start=0, num=limit - len(stale))
                if ids:
                    socket_ids = [SocketId(_str(cast(bytes, i))) for i in ids]
                    records = await self.client.hmget(p + "conns", socket_ids)
                    stale += [self._connection(app_id, s, r) for s, r in zip(socket_ids, records, strict=True) if r]
                    gone = [s for s, r in zip(socket_ids, records, strict=True) if not r]
                    if gone:
                        await self.client.zrem(p + "seen", *gone)
                if len(stale) >= limit:
                    break
        return stale

    # -- lifecycle -------------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def check_health(self) -> bool:
        return await self.ping(self.client)
