"""The ``Sender`` protocol: deliver encoded frames to sockets, report the ones that are gone."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from shared.types import AppId, SocketId


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
