"""The ``ChannelStore`` protocol and its value types.

Every decision that must happen exactly once across processes (channel occupied/vacated, member
added/removed, user online/offline, connection quota) is taken *inside* one store call, atomically,
and reported back in the result; the engine only reacts to those results.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.types import AppId, ChannelName, SocketId, UserId


@dataclass(frozen=True, slots=True)
class Connection:
    app_id: AppId
    socket_id: SocketId
    connected_at: float
    user_id: UserId | None = None
    user_data: str | None = None  # the raw signed user_data JSON string
    watchlist: tuple[UserId, ...] = ()
    # AWS only: the API Gateway connectionId behind this socket (socket ids must be numeric,
    # docs/sources.md#identifiers-and-limits).
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    user_id: UserId
    user_info: Any = None


@dataclass(frozen=True, slots=True)
class Subscription:
    user_id: UserId | None = None  # presence channels: the member this socket joined as


@dataclass(frozen=True, slots=True)
class JoinResult:
    joined: bool  # False: the socket was already subscribed, nothing changed
    occupied: bool = False  # the channel had no subscriber before
    member_added: bool = False  # the user had no socket in this presence channel before
    subscription_count: int = 0
    # A presence join's roster as the JSON text of subscription_succeeded's data, from stores that read it in
    # the same atomic step as the join (Redis: one round trip, no decode and re-encode of every member on the
    # node). None: the engine reads ``members`` afterwards.
    presence_data: str | None = None
    # Where this change stands among the channel's subscription changes: the store's clock when it made it
    # (Redis: its ``TIME`` in microseconds, read inside the script that made it). It orders the
    # ``subscription_count`` frames of one channel across the nodes of a cluster, whose pub/sub delivers a
    # peer's count at its own pace: a node drops a count older than one it already knows
    # (``NodeIndex.counted``), so no subscriber ends on a stale count. 0: not known; stores whose sender keeps
    # no node index (memory: one process; DynamoDB: each invocation posts its own frames) leave it so. A stamp,
    # not part of what the change was: results compare equal whatever their versions.
    version: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LeaveResult:
    channel: ChannelName
    left: bool  # False: the socket was not subscribed
    vacated: bool = False
    member_removed: UserId | None = None
    subscription_count: int = 0
    version: int = field(default=0, compare=False)  # as ``JoinResult.version``


@dataclass(frozen=True, slots=True)
class Departure:
    """What removing a connection changed: channels left (with their effects) and whether its user went offline."""

    connection: Connection
    left: tuple[LeaveResult, ...] = ()
    user_offline: bool = False


@dataclass(frozen=True, slots=True)
class ChannelStats:
    subscription_count: int = 0
    user_count: int | None = None  # presence channels only


@dataclass(frozen=True, slots=True)
class CachedEvent:
    frame: bytes
    ttl: float


@dataclass(frozen=True, slots=True)
class PresenceFull:
    """Returned (not raised) by ``subscribe`` when a new member would exceed the channel's limit."""

    limit: int
    members: Mapping[UserId, Any] = field(default_factory=dict)


class ChannelStore(Protocol):
    """Connections, subscriptions, presence and cache state for every app.

    All methods are idempotent where the protocol allows a retry (Lambda may deliver ``$disconnect``
    twice): removing an absent connection returns ``None``; leaving an unjoined channel returns
    ``left=False``. Implementations raise ``StoreUnavailable`` when their backend is unreachable.
    """

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        """Record a new connection; ``False`` (and nothing stored) when the app is at ``max_connections``."""

    async def get_connection(self, app_id: AppId, socket_id: SocketId) -> Connection | None: ...

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        """Bind a user to the connection; ``True`` when it is the user's first signed-in socket (online)."""

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        """Remove the connection with its subscriptions, presence entries and user binding, atomically."""

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull: ...

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult: ...

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        """The socket's subscription to the channel (with its presence user id), ``None`` if not subscribed."""

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        """The channel's subscribers, in one call whatever their number (fan-out never awaits per socket)."""

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]: ...

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        """Occupied channels whose name starts with ``prefix``."""

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats: ...

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]: ...

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        """Sockets whose signed-in user has ``user_id`` on their watchlist."""

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]: ...

    async def connection_count(self, app_id: AppId) -> int: ...

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None: ...

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None: ...

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...
