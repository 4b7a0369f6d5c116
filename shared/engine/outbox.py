"""``Outbox``: how the engine's helpers send frames — through the engine, which counts them and drops gone sockets.

``channels.py`` and ``users.py`` are functions over the collaborators they use, each module declaring them as
a protocol (``ChannelsEngine``, ``UsersEngine``) that ``Engine`` satisfies: they never see the rest of it.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol

from shared.settings import AppConfig
from shared.types import ChannelName, SocketId


class Outbox(Protocol):
    async def send(self, app: AppConfig, socket_id: SocketId, frame: bytes) -> bool:
        """``False`` when the socket is gone."""
        ...

    async def broadcast(
        self, app: AppConfig, sockets: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> int:
        """The frame to each of ``sockets``; returns how many were sent."""
        ...

    async def broadcast_channel(
        self,
        app: AppConfig,
        channel: ChannelName,
        frame: bytes,
        except_socket: SocketId | None = None,
        *,
        version: int = 0,
    ) -> int:
        """The frame to the channel's subscribers; returns how many this process sent. ``version`` > 0: a
        ``subscription_count`` as of that change (``JoinResult.version``), dropped where a newer one is known."""
        ...

    def joining(self, app: AppConfig, socket_id: SocketId, channel: ChannelName) -> AbstractContextManager[None]:
        """Around a join: the channel's broadcasts reach the joiner only after what it is sent inside (its
        ``subscription_succeeded``), so a ``member_added`` never comes before the roster, nor a count older
        than the join's."""
        ...
