"""The ``Sender`` protocol: deliver encoded frames to sockets, report the ones that are gone."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shared.types import AppId, ChannelName, SocketId


@dataclass(frozen=True, slots=True)
class Delivery:
    """Outcome of a broadcast: how many sockets got the frame, which are gone (the engine cleans them up),
    and how many could not be reached for another reason (throttling that outlived the retries)."""

    sent: int
    gone: tuple[SocketId, ...] = ()
    failed: int = 0


class Sender(Protocol):
    async def send(self, app_id: AppId, socket_id: SocketId, frame: bytes) -> bool:
        """Send one frame; ``False`` when the socket is gone."""

    async def broadcast(
        self, app_id: AppId, socket_ids: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        """Send the same bytes to every socket but ``except_socket``; never awaits once per socket in a loop
        that could be concurrent."""

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        """Close the socket with a Pusher close code (where the transport allows custom codes)."""

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...


@runtime_checkable
class ChannelBroadcaster(Protocol):
    """A sender that reaches a channel's subscribers without being handed their list: a local-server node of a
    Redis cluster knows its own sockets' subscriptions, and its peers know theirs. The engine then skips
    reading the subscriber list from the store for every event (``Engine.broadcast_channel``)."""

    async def broadcast_channel(
        self,
        app_id: AppId,
        channel: ChannelName,
        frame: bytes,
        except_socket: SocketId | None = None,
        *,
        version: int = 0,
    ) -> Delivery:
        """``version`` > 0: the frame is the channel's ``subscription_count`` as of that change
        (``JoinResult.version``); where a newer change is known, it is stale and dropped."""
        ...

    def hold_channel(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        """Keep the channel's broadcasts to ``socket_id`` aside, in order, until :meth:`release_channel`.

        Such a sender puts a joining socket in its index before the store has answered the join, so that no
        event published after the join is missed; but then a peer's frames sent before the join can reach the
        socket before its own ``subscription_succeeded``: a ``member_added`` whose member pusher-js then loses
        (it takes the roster as the whole truth), a ``subscription_count`` older than the join's own. Held
        while the join is in flight, such frames go out after it, but for counts older than the join."""

    def release_channel(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> None:
        """Write what was held for the socket (after whatever was sent to it meanwhile) and stop holding."""
