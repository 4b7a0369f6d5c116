"""``MemoryChannelStore``: the single-process store of the self-hosted server.

Each call runs without an ``await`` inside, so on one event loop every call is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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


@dataclass(slots=True)
class _Member:
    info: Any
    sockets: int = 0


@dataclass(slots=True)
class _AppState:
    connections: dict[SocketId, Connection] = field(default_factory=dict)
    # channel -> {socket: presence user id or None}; dicts keep insertion order and O(1) removal.
    channels: dict[ChannelName, dict[SocketId, UserId | None]] = field(default_factory=dict)
    socket_channels: dict[SocketId, set[ChannelName]] = field(default_factory=dict)
    members: dict[ChannelName, dict[UserId, _Member]] = field(default_factory=dict)
    users: dict[UserId, set[SocketId]] = field(default_factory=dict)
    watchers: dict[UserId, set[SocketId]] = field(default_factory=dict)
    cache: dict[ChannelName, tuple[bytes, float]] = field(default_factory=dict)


class MemoryChannelStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._apps: dict[AppId, _AppState] = {}
        self._clock = clock

    def _app(self, app_id: AppId) -> _AppState:
        state = self._apps.get(app_id)
        if state is None:
            state = self._apps[app_id] = _AppState()
        return state

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        state = self._app(connection.app_id)
        if max_connections is not None and len(state.connections) >= max_connections:
            return False
        state.connections[connection.socket_id] = connection
        return True

    async def get_connection(self, app_id: AppId, socket_id: SocketId) -> Connection | None:
        return self._app(app_id).connections.get(socket_id)

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        state = self._app(app_id)
        conn = state.connections.get(socket_id)
        if conn is None:
            return False
        if conn.user_id is not None:
            self._drop_user(state, conn)
        state.connections[socket_id] = replace(conn, user_id=user_id, user_data=user_data, watchlist=watchlist)
        for watched in watchlist:
            state.watchers.setdefault(watched, set()).add(socket_id)
        sockets = state.users.setdefault(user_id, set())
        sockets.add(socket_id)
        return len(sockets) == 1

    def _drop_user(self, state: _AppState, conn: Connection) -> bool:
        for watched in conn.watchlist:
            watchers = state.watchers.get(watched)
            if watchers is not None:
                watchers.discard(conn.socket_id)
                if not watchers:
                    del state.watchers[watched]
        if conn.user_id is None:
            return False
        sockets = state.users.get(conn.user_id)
        if sockets is None or conn.socket_id not in sockets:
            return False
        sockets.discard(conn.socket_id)
        if not sockets:
            del state.users[conn.user_id]
            return True
        return False

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        state = self._app(app_id)
        conn = state.connections.pop(socket_id, None)
        if conn is None:
            return None
        left = tuple(self._leave(state, socket_id, channel) for channel in state.socket_channels.pop(socket_id, ()))
        offline = self._drop_user(state, conn)
        return Departure(connection=conn, left=left, user_offline=offline)

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        state = self._app(app_id)
        if socket_id not in state.connections:
            return JoinResult(joined=False)
        subscribers = state.channels.get(channel)
        if subscribers is not None and socket_id in subscribers:
            return JoinResult(joined=False, subscription_count=len(subscribers))
        member_added = False
        if member is not None:
            members = state.members.setdefault(channel, {})
            existing = members.get(member.user_id)
            if existing is None:
                if len(members) >= max_members:
                    if not members:
                        del state.members[channel]
                    return PresenceFull(limit=max_members)
                existing = members[member.user_id] = _Member(info=member.user_info)
                member_added = True
            existing.sockets += 1
        occupied = subscribers is None
        if subscribers is None:
            subscribers = state.channels[channel] = {}
        subscribers[socket_id] = member.user_id if member is not None else None
        state.socket_channels.setdefault(socket_id, set()).add(channel)
        return JoinResult(
            joined=True, occupied=occupied, member_added=member_added, subscription_count=len(subscribers)
        )

    def _leave(self, state: _AppState, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        subscribers = state.channels.get(channel)
        if subscribers is None or socket_id not in subscribers:
            return LeaveResult(channel=channel, left=False)
        user_id = subscribers.pop(socket_id)
        removed: UserId | None = None
        if user_id is not None:
            members = state.members.get(channel, {})
            entry = members.get(user_id)
            if entry is not None:
                entry.sockets -= 1
                if entry.sockets <= 0:
                    del members[user_id]
                    removed = user_id
                if not members:
                    state.members.pop(channel, None)
        vacated = not subscribers
        if vacated:
            del state.channels[channel]
        return LeaveResult(
            channel=channel, left=True, vacated=vacated, member_removed=removed, subscription_count=len(subscribers)
        )

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        state = self._app(app_id)
        result = self._leave(state, socket_id, channel)
        if result.left:
            joined = state.socket_channels.get(socket_id)
            if joined is not None:
                joined.discard(channel)
        return result

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        subscribers = self._app(app_id).channels.get(channel)
        if subscribers is None or socket_id not in subscribers:
            return None
        return Subscription(user_id=subscribers[socket_id])

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        subscribers = self._app(app_id).channels.get(channel)
        return tuple(subscribers) if subscribers else ()

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        return {uid: m.info for uid, m in self._app(app_id).members.get(channel, {}).items()}

    def _stats(self, state: _AppState, channel: ChannelName) -> ChannelStats:
        subscribers = state.channels.get(channel)
        count = len(subscribers) if subscribers else 0
        user_count = len(state.members.get(channel, ())) if channel.startswith("presence-") else None
        return ChannelStats(subscription_count=count, user_count=user_count)

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        state = self._app(app_id)
        return {ch: self._stats(state, ch) for ch in state.channels if ch.startswith(prefix)}

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        return self._stats(self._app(app_id), channel)

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        return tuple(self._app(app_id).users.get(user_id, ()))

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        return tuple(self._app(app_id).watchers.get(user_id, ()))

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        users = self._app(app_id).users
        return {uid for uid in user_ids if uid in users}

    async def connection_count(self, app_id: AppId) -> int:
        return len(self._app(app_id).connections)

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None:
        self._app(app_id).cache[channel] = (frame, self._clock() + ttl)

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None:
        cache = self._app(app_id).cache
        entry = cache.get(channel)
        if entry is None:
            return None
        left = entry[1] - self._clock()
        if left <= 0:
            del cache[channel]
            return None
        return CachedEvent(frame=entry[0], ttl=left)

    async def close(self) -> None:
        self._apps.clear()

    async def check_health(self) -> bool:
        return True
