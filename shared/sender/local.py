"""``LocalSender``: writes frames to the sockets this process terminates itself."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from shared.sender.base import Delivery
from shared.types import AppId, SocketId


class Transport(Protocol):
    """What the local server registers per socket: a synchronous buffered write and an async close."""

    def write(self, frame: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


Fanout = Callable[[list[Transport], bytes], None]
"""Writes one frame to many transports (the receivers of one broadcast, already looked up)."""


def write_each(transports: list[Transport], frame: bytes) -> None:
    for transport in transports:
        transport.write(frame)


class LocalSender:
    def __init__(self, fanout: Fanout = write_each) -> None:
        self._sockets: dict[SocketId, Transport] = {}
        # The local server passes its cork's, which queues a whole broadcast as one entry instead of one frame
        # per socket (local_server/transport.py).
        self.fanout = fanout

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
        # The per-delivery loop of every broadcast: no per-socket work beyond the lookup.
        get = self._sockets.get
        gone: list[SocketId] = []
        targets: list[Transport] = []
        add = targets.append
        for socket_id in socket_ids:
            transport = get(socket_id)
            if transport is None:
                if socket_id != except_socket:
                    gone.append(socket_id)
            elif except_socket is None or socket_id != except_socket:
                add(transport)
        if targets:
            self.fanout(targets, frame)
        return Delivery(sent=len(targets), gone=tuple(gone))

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        transport = self._sockets.get(socket_id)
        if transport is not None:
            await transport.close(code, reason)

    async def close(self) -> None:
        self._sockets.clear()

    async def check_health(self) -> bool:
        return True
