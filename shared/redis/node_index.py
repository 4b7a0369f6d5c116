"""``NodeIndex``: the subscriptions of the sockets one local-server node holds, kept in process beside Redis.

Only the node holding a socket subscribes, unsubscribes or disconnects it (other callers remove sockets this
index never had), so the index is exact for the node's own sockets: a channel broadcast reaches them without
reading the channel's subscribers from Redis (``RedisSender.broadcast_channel``), and a client event's
sender is found subscribed without a round trip. ``RedisChannelStore`` changes it before its Redis call: a
socket that is leaving gets nothing more, whatever Redis answers.

It also keeps, per channel with subscribers here, the newest subscription change the node knows of (``counted``:
the ``version`` of a join or leave made here, or of a ``subscription_count`` frame delivered here). A peer's count
travels through pub/sub at its own pace and can arrive after a newer change: after the join of a socket of this
node, say, whose own count is 2 while the peer's says 1. That frame is then stale and is dropped, so no
subscriber sees the count go back, or ends on the wrong one.
"""

from __future__ import annotations

from collections.abc import Collection

from shared.store.base import Subscription
from shared.types import AppId, ChannelName, SocketId, UserId

_Key = tuple[AppId, ChannelName]


class NodeIndex:
    def __init__(self) -> None:
        self._sockets: dict[_Key, set[SocketId]] = {}
        # socket -> its channels here, each with the member it joined as (presence), for client events
        self._channels: dict[SocketId, dict[_Key, UserId | None]] = {}
        # channel -> the newest subscription change known here (``JoinResult.version``), while it has sockets here
        self._versions: dict[_Key, int] = {}

    def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        """This node's own subscribers of a channel; read it without awaiting in between."""
        return self._sockets.get((app_id, channel), ())

    def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        """The socket's subscription, if this node holds the socket and it is subscribed (else ask Redis)."""
        channels = self._channels.get(socket_id)
        if channels is None or (app_id, channel) not in channels:
            return None
        return Subscription(user_id=channels[(app_id, channel)])

    def channels_of(self, socket_id: SocketId) -> list[tuple[AppId, ChannelName, UserId | None]]:
        """The socket's subscriptions on this node, each with its presence member (``None`` elsewhere)."""
        return [(app_id, channel, user) for (app_id, channel), user in self._channels.get(socket_id, {}).items()]

    def counted(self, app_id: AppId, channel: ChannelName, version: int) -> bool:
        """Note a subscription change of ``version``; False when a newer one is known here (a count that says
        less than what this node knows). Only channels with subscribers here are remembered: a count for
        another has nobody here to reach."""
        key = (app_id, channel)
        known = self._versions.get(key, 0)
        if version < known:
            return False
        if key in self._sockets:
            self._versions[key] = version
        return True

    def count_version(self, app_id: AppId, channel: ChannelName) -> int:
        """The newest subscription change of the channel known here (0: none)."""
        return self._versions.get((app_id, channel), 0)

    def join(self, app_id: AppId, socket_id: SocketId, channel: ChannelName, user_id: UserId | None) -> None:
        key = (app_id, channel)
        self._sockets.setdefault(key, set()).add(socket_id)
        # The first subscription's member stays (as in Redis) if this one turns out to be a repeat.
        self._channels.setdefault(socket_id, {}).setdefault(key, user_id)

    def leave(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        key = (app_id, channel)
        channels = self._channels.get(socket_id)
        if channels is not None:
            channels.pop(key, None)
            if not channels:
                del self._channels[socket_id]
        self._discard(key, socket_id)

    def drop(self, socket_id: SocketId) -> None:
        """The socket is gone: out of every channel."""
        for key in self._channels.pop(socket_id, ()):
            self._discard(key, socket_id)

    def _discard(self, key: _Key, socket_id: SocketId) -> None:
        sockets = self._sockets.get(key)
        if sockets is not None:
            sockets.discard(socket_id)
            if not sockets:
                del self._sockets[key]
                self._versions.pop(key, None)
