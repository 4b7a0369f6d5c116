"""``LocalSender``: writes frames to the sockets this process terminates itself."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from shared.sender.base import Delivery
from shared.types import AppId, SocketId


class Transport(Protocol):
    """What the local server registers per socket: a synchronous buffered write and an async close."""

    def write(self, frame: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class LocalSender:
    def __init__(self) -> None:
        self._sockets: dict[SocketId, Transport] = {}

    def register(self, socket_id: SocketId, transport: Transport) -> None:
        self._sockets[socket_id] = transport

    def unregister(self, socket_id: SocketId) -> None:
        self._sockets.pop(socket_id, None)

    def transports(self) -> list[tuple[SocketId, Transport]]:
        return list(self._sockets.items())

    async def send(self, app_id: AppId, socket_id: SocketId, frame: bytes) -> bool:
        transport = self._sockets.get(socket_id)
        if transport is None:
            return False
        transport.write(frame)
        return True

    async def broadcast(
        self, app_id: AppId, socket_ids: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        # The per-delivery loop of every broadcast: no per-socket work beyond the lookup and the write.
        get = self._sockets.get
        gone: list[SocketId] = []
        skipped = 0
        for socket_id in socket_ids:
            transport = get(socket_id)
            if transport is None:
                if socket_id == except_socket:
                    skipped += 1
                else:
                    gone.append(socket_id)
            elif except_socket is not None and socket_id == except_socket:
                skipped += 1
            else:
                transport.write(frame)
        return Delivery(sent=len(socket_ids) - skipped - len(gone), gone=tuple(gone))

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        transport = self._sockets.get(socket_id)
        if transport is not None:
            await transport.close(code, reason)

    async def close(self) -> None:
        self._sockets.clear()

    async def check_health(self) -> bool:
        return True
