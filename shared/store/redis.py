"""``RedisChannelStore``: the shared store of a local-server cluster and the ElastiCache store of the Lambda path.

Every decision the contract makes atomic (quota, occupied/vacated, member added/removed, online/offline)
is one Lua script (``shared/store/redis_scripts.py``), so it holds across processes and hosts. Reads are
single commands. Redis errors become ``StoreUnavailable``; nothing here retries or falls back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from shared.redis.batching import batched
from shared.redis.errors import CountsErrors
from shared.redis.keys import RedisKeys
from shared.redis.node_index import NodeIndex
from shared.redis.nodes import RedisNodeRegistry
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

DEFAULT_TTL_SECONDS = 86400


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_INFO_CACHE_SIZE = 100_000
_MISSING = object()


class RedisChannelStore(CountsErrors):
    """See ``shared/redis/keys.py`` for the key layout, ``shared/store/redis_scripts.py`` for the scripts.

    On a local-server node, ``node`` is the node's registry (each connection records the node that holds its
    socket, so broadcasts can be routed to it and a dead node's connections can be found and removed) and
    ``index`` the node's subscription index, kept beside Redis (``shared/redis/node_index.py``).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "sockless",
        node: RedisNodeRegistry | None = None,
        index: NodeIndex | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        owns_client: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.node = node
        self.index = index
        self.ttl_seconds = ttl_seconds
        self._owns_client = owns_client
        self._node_id = "" if node is None else node.node_id
        # The scripts of bursts (connects, subscribes, disconnects) share pipelines (``BatchedScript``).
        # Connects and disconnects also wait for the batch in flight (``serial``): nobody watches their
        # latency, and a storm's batches grow.
        self._add = batched(client, scripts.ADD_CONNECTION, serial=True)
        self._sign_in = batched(client, scripts.SIGN_IN)
        self._remove = batched(client, scripts.REMOVE_CONNECTION, serial=True)
        self._subscribe = batched(client, scripts.SUBSCRIBE)
        self._unsubscribe = batched(client, scripts.UNSUBSCRIBE)
        self._channels = client.register_script(scripts.CHANNELS)
        self._online = client.register_script(scripts.ONLINE)
        self._seen = client.register_script(scripts.SEEN)
        self._refresh = client.register_script(scripts.REFRESH)
        self._known_apps: set[AppId] = set()  # apps already in the global app list
        self._clock = clock
        # Decoded user_info by its stored JSON: a presence join sends the whole roster, and decoding every
        # member's info again for each join was most of a join's cost at a few hundred members. The values
        # are only encoded again, never mutated (as with the memory store's members).
        self._infos: dict[bytes | str, Any] = {}

    # -- connections -----------------------------------------------------------------------------------

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        record: dict[str, str] = {"at": repr(connection.connected_at)}
        if self.node is not None:
            record["n"] = self._node_id
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
            self._node_id,
            connection.connection_id or "",
            repr(self._clock()),
        ]
        app_id = connection.app_id
        with self.unavailable("add_connection"):
            added = await self._add(keys=[self.keys.app(app_id)], args=args)
            if not added:
                return False
            # Keys outside the app's slot: separate commands, after the decision.
            if connection.connection_id is not None:
                await self.client.set(
                    self.keys.connection(connection.connection_id),
                    f"{app_id}\n{connection.socket_id}",
                    ex=self.ttl_seconds or None,
                )
            if app_id not in self._known_apps:
                await self.client.sadd(self.keys.apps, app_id)
                self._known_apps.add(app_id)
        if self.node is not None:
            await self.node.held(app_id)
        return True

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
            raw = await self.client.hget(self.keys.connections(app_id), socket_id)
        return None if raw is None else self._connection(app_id, socket_id, raw)

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        args: list[str | int] = [self.ttl_seconds, socket_id, user_id, user_data, json.dumps(list(watchlist))]
        with self.unavailable("sign_in"):
            result = await self._sign_in(keys=[self.keys.app(app_id)], args=args)
        return int(result) == 1

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        if self.index is not None:
            self.index.drop(socket_id)
        with self.unavailable("remove_connection"):
            result = await self._remove(keys=[self.keys.app(app_id)], args=[self.ttl_seconds, socket_id])
        if result is None:
            return None
        raw, offline, left = result
        connection = self._connection(app_id, socket_id, raw)
        if connection.connection_id is not None:
            with self.unavailable("remove_connection"):
                await self.client.delete(self.keys.connection(connection.connection_id))
        return Departure(
            connection=connection,
            left=tuple(self._leave_result(app_id, item) for item in left),
            user_offline=bool(offline),
        )

    # -- subscriptions ---------------------------------------------------------------------------------

    def _leave_result(self, app_id: AppId, item: Sequence[Any]) -> LeaveResult:
        channel, left, vacated, removed, count = item[:5]
        result = LeaveResult(
            channel=ChannelName(_str(channel)),
            left=bool(left),
            vacated=bool(vacated),
            member_removed=UserId(_str(removed)) if removed else None,
            subscription_count=int(count) if left else 0,
            version=int(item[5]) if left and len(item) > 5 else 0,
        )
        if self.index is not None and result.version:
            self.index.counted(app_id, result.channel, result.version)
        return result

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        # Compact JSON: the stored text goes verbatim into every joiner's roster (see the SUBSCRIBE script).
        info = "" if member is None else json.dumps(member.user_info, separators=(",", ":"))
        user_id = "" if member is None else member.user_id
        args: list[str | int] = [self.ttl_seconds, socket_id, channel, user_id, info, max_members]
        if self.index is not None:
            self.index.join(app_id, socket_id, channel, member.user_id if member else None)
        with self.unavailable("subscribe"):
            result = await self._subscribe(keys=[self.keys.app(app_id)], args=args)
        if int(result[0]) == -1:
            if self.index is not None:
                self.index.leave(app_id, socket_id, channel)
            return PresenceFull(limit=max_members)
        joined, occupied, added, count = (int(x) for x in result[:4])
        version = int(result[4]) if joined and len(result) > 4 else 0
        if self.index is not None and version:
            # Before anything else runs on this node: a peer's count older than this join is stale from now on.
            self.index.counted(app_id, channel, version)
        return JoinResult(
            joined=bool(joined),
            occupied=bool(occupied),
            member_added=bool(added),
            subscription_count=count,
            presence_data=_str(result[5]) if len(result) > 5 else None,
            version=version,
        )

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        if self.index is not None:
            self.index.leave(app_id, socket_id, channel)
        with self.unavailable("unsubscribe"):
            result = await self._unsubscribe(keys=[self.keys.app(app_id)], args=[self.ttl_seconds, socket_id, channel])
        return self._leave_result(app_id, result)

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        # A node's own socket (client events come from there): its index answers without a round trip.
        if self.index is not None:
            known = self.index.subscription(app_id, socket_id, channel)
            if known is not None:
                return known
        with self.unavailable("subscription"):
            mark = await self.client.hget(self.keys.channel(app_id, channel), socket_id)
        if mark is None:
            return None
        user = _str(mark)
        return Subscription(user_id=UserId(user[1:]) if user else None)

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        with self.unavailable("sockets"):
            keys = await self.client.hkeys(self.keys.channel(app_id, channel))
        return [SocketId(_str(k)) for k in keys]

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        with self.unavailable("members"):
            raw = await self.client.hgetall(self.keys.member_infos(app_id, channel))
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
            flat = await self._channels(keys=[self.keys.app(app_id)], args=[self.ttl_seconds, prefix])
        out: dict[ChannelName, ChannelStats] = {}
        for i in range(0, len(flat), 3):
            name = _str(flat[i])
            out[ChannelName(name)] = self._stats(name, int(flat[i + 1]), int(flat[i + 2]))
        return out

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        with self.unavailable("channel_stats"):
            count = await self.client.hlen(self.keys.channel(app_id, channel))
            presence = channel.startswith("presence-")
            members = await self.client.hlen(self.keys.member_counts(app_id, channel)) if presence else 0
        return self._stats(channel, int(count), int(members))

    # -- users -----------------------------------------------------------------------------------------

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        with self.unavailable("user_sockets"):
            members = await self.client.smembers(self.keys.user_sockets(app_id, user_id))
        return [SocketId(_str(m)) for m in members]

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        with self.unavailable("watchers"):
            members = await self.client.smembers(self.keys.watchers(app_id, user_id))
        return [SocketId(_str(m)) for m in members]

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        ids = list(user_ids)
        if not ids:
            return set()
        with self.unavailable("online"):
            found = await self._online(keys=[self.keys.app(app_id)], args=[self.ttl_seconds, *ids])
        return {UserId(_str(u)) for u in found}

    async def connection_count(self, app_id: AppId) -> int:
        with self.unavailable("connection_count"):
            return int(await self.client.hlen(self.keys.connections(app_id)))

    # -- cache channels --------------------------------------------------------------------------------

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None:
        with self.unavailable("cache_put"):
            await self.client.set(self.keys.cache(app_id, channel), frame, px=max(int(ttl * 1000), 1))

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None:
        key = self.keys.cache(app_id, channel)
        with self.unavailable("cache_get"):
            frame = await self.client.get(key)
            left_ms = await self.client.pttl(key) if frame is not None else -2
        if frame is None or left_ms == -2:
            return None
        ttl = left_ms / 1000 if left_ms >= 0 else float(self.ttl_seconds)
        return CachedEvent(frame=frame if isinstance(frame, bytes) else frame.encode(), ttl=ttl)

    # -- the local-server cluster (local_server/cluster.py) ---------------------------------------------

    async def connected_since(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> list[float | None]:
        """``connected_at`` of each socket (``None``: no such connection), in the order given."""
        with self.unavailable("connected_since"):
            records = await self.client.hmget(self.keys.connections(app_id), list(socket_ids))
        return [None if r is None else float(json.loads(r)["at"]) for r in records]

    async def refresh_ttl(self, app_id: AppId, socket_ids: Sequence[SocketId], batch: int = 500) -> int:
        """Refresh the TTL of every key the given (live) sockets use; returns how many still exist."""
        alive = 0
        with self.unavailable("refresh_ttl"):
            for start in range(0, max(len(socket_ids), 1), batch):
                chunk = list(socket_ids[start : start + batch])
                args: list[str | int] = [self.ttl_seconds, self._node_id, *chunk]
                alive += int(await self._refresh(keys=[self.keys.app(app_id)], args=args))
            if self.node is not None:
                await self.client.sadd(self.keys.node_apps(self._node_id), app_id)
        return alive

    # -- the Lambda path (functions/connections.py ConnectionMap, ApiGatewaySender's resolver) ------------

    async def socket_for_connection(self, connection_id: str) -> tuple[AppId, SocketId] | None:
        """The (app, socket) an API Gateway connectionId was recorded with (``$default``/``$disconnect``)."""
        with self.unavailable("socket_for_connection"):
            found = await self.client.get(self.keys.connection(connection_id))
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
            found = await self.client.hmget(self.keys.connection_ids(app_id), ids)
        return {socket_id: _str(cid) for socket_id, cid in zip(ids, found, strict=True) if cid is not None}

    async def touch(self, app_id: AppId, socket_id: SocketId) -> bool:
        """Record a sign of life; ``False`` when the connection is gone."""
        with self.unavailable("touch"):
            seen = await self._seen(
                keys=[self.keys.app(app_id)], args=[self.ttl_seconds, socket_id, repr(self._clock())]
            )
        return bool(seen)

    async def stale_connections(self, silent_for: float, limit: int = 100) -> list[Connection]:
        """Connections with no sign of life (connect or :meth:`touch`) for ``silent_for`` seconds, oldest
        first; returned again until the caller removes or touches them."""
        cutoff = self._clock() - silent_for
        stale: list[Connection] = []
        with self.unavailable("stale_connections"):
            apps = sorted(AppId(_str(a)) for a in await self.client.smembers(self.keys.apps))
            for app_id in apps:
                seen = self.keys.seen(app_id)
                ids = await self.client.zrangebyscore(seen, "-inf", cutoff, start=0, num=limit - len(stale))
                if ids:
                    socket_ids = [SocketId(_str(cast(bytes, i))) for i in ids]
                    records = await self.client.hmget(self.keys.connections(app_id), socket_ids)
                    stale += [self._connection(app_id, s, r) for s, r in zip(socket_ids, records, strict=True) if r]
                    gone = [s for s, r in zip(socket_ids, records, strict=True) if not r]
                    if gone:
                        await self.client.zrem(seen, *gone)
                if len(stale) >= limit:
                    break
        return stale

    # -- lifecycle -------------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def check_health(self) -> bool:
        return await self.ping(self.client)
