"""The handlers' view of connections on AWS: API Gateway connectionIds mapped to (app, socket_id).

The socket id pusher-js and the server SDKs see must be numeric, so it cannot be the connectionId; the
store keeps the map both ways (``DynamoDBChannelStore.socket_for_connection`` / ``connection_ids``).
Everything else is the engine's: this module only finds the app and socket an event is about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from shared.settings import AppConfig
from shared.store.base import Connection
from shared.types import AppId, SocketId

if TYPE_CHECKING:
    from shared.services import Services


@runtime_checkable
class ConnectionMap(Protocol):
    """What a store adds to ``ChannelStore`` for the Lambda handlers (the DynamoDB and Redis stores have it;
    the memory store, which cannot outlive an invocation, has not)."""

    async def socket_for_connection(self, connection_id: str) -> tuple[AppId, SocketId] | None: ...


@runtime_checkable
class SweepIndex(Protocol):
    """What the sweep function needs of the store (the DynamoDB store has it)."""

    async def due_connections(self) -> list[Connection]: ...

    async def forget_entry(self, connection: Connection) -> None: ...


@runtime_checkable
class LivenessIndex(Protocol):
    """The Redis (Valkey) store's liveness index: connections silent for a while, and a touch."""

    async def stale_connections(self, silent_for: float, limit: int = 100) -> list[Connection]: ...

    async def touch(self, app_id: AppId, socket_id: SocketId) -> bool: ...


class TouchingSweepIndex:
    """A :class:`SweepIndex` over a store that files connections by their last sign of life (Redis): the
    connections silent for a cycle come due and are touched, so a live one comes due once per cycle. On
    Redis a touch is one small write of memory the stack pays for anyway, not a billed request."""

    def __init__(self, store: LivenessIndex, cycle: float, batch: int = 1000) -> None:
        self.store, self.cycle, self.batch = store, cycle, batch

    async def due_connections(self) -> list[Connection]:
        due = await self.store.stale_connections(self.cycle, self.batch)
        for connection in due:
            await self.store.touch(connection.app_id, connection.socket_id)
        return due

    async def forget_entry(self, connection: Connection) -> None:
        """Nothing to drop: a Redis connection's liveness goes with the connection."""


class Connections:
    def __init__(self, services: Services) -> None:
        self.services = services
        store = services.store
        if not isinstance(store, ConnectionMap):
            raise TypeError(
                f"store driver {services.settings.store.driver!r} cannot map API Gateway connectionIds: "
                "the Lambda handlers need the dynamodb store"
            )
        self.map: ConnectionMap = store

    @property
    def sweep_index(self) -> SweepIndex:
        """The store's sweep index; ``TypeError`` naming the driver when it has none."""
        store = self.services.store
        if isinstance(store, SweepIndex):
            return store
        if isinstance(store, LivenessIndex):
            return TouchingSweepIndex(store, self.services.settings.aws.stale_after_seconds)
        raise TypeError(f"store driver {self.services.settings.store.driver!r} has no sweep index")

    async def open(self, app: AppConfig, connection_id: str) -> Connection:
        """Record a new connection under a fresh numeric socket id (raises ``OverConnectionQuota``)."""
        return await self.services.engine.connect(app, connection_id=connection_id)

    async def lookup(self, connection_id: str) -> tuple[AppConfig, SocketId] | None:
        found = await self.map.socket_for_connection(connection_id)
        if found is None:
            return None
        app = await self.services.apps.by_id(found[0])
        return (app, found[1]) if app is not None else None

    async def close(self, connection_id: str) -> None:
        """``$disconnect``: everything the connection held goes, with its effects, exactly once."""
        found = await self.lookup(connection_id)
        if found is not None:
            await self.services.engine.disconnect(*found)

    async def close_socket(self, app_id: AppId, socket_id: SocketId) -> None:
        app = await self.services.apps.by_id(app_id)
        if app is not None:
            await self.services.engine.disconnect(app, socket_id)
