"""``RedisNodeRegistry``: which node of a local-server cluster holds which socket, and which apps each node has
held sockets of — what routing, reaping and reconciliation read (``local_server/cluster.py``).

The store's scripts record a socket's node as they add or remove it (``P sn``, ``P node:<node>``, see
``shared/redis/keys.py``), so the records change atomically with the connection; this module reads them
and keeps the per-node app list.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from shared.redis.errors import CountsErrors
from shared.redis.keys import RedisKeys
from shared.types import AppId, SocketId


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisNodeRegistry(CountsErrors):
    def __init__(self, client: Redis, *, node_id: str, prefix: str = "sockless") -> None:
        self.client = client
        self.node_id = node_id
        self.keys = RedisKeys(prefix)
        self.apps: set[AppId] = set()  # apps this node has held sockets of

    async def held(self, app_id: AppId) -> None:
        """This node holds a socket of ``app_id`` (recorded once per app and process)."""
        if app_id not in self.apps:
            with self.unavailable("node apps"):
                await self.client.sadd(self.keys.node_apps(self.node_id), app_id)
            self.apps.add(app_id)

    async def remember_apps(self) -> None:
        """Write this node's app list again (a heartbeat: Redis may have restarted empty)."""
        if self.apps:
            with self.unavailable("node apps"):
                await self.client.sadd(self.keys.node_apps(self.node_id), *sorted(self.apps))

    async def apps_of_node(self, node_id: str) -> set[AppId]:
        with self.unavailable("apps_of_node"):
            members = await self.client.smembers(self.keys.node_apps(node_id))
        return {AppId(_str(m)) for m in members}

    async def node_sockets(self, app_id: AppId, node_id: str) -> set[SocketId]:
        with self.unavailable("node_sockets"):
            members = await self.client.smembers(self.keys.node_sockets(app_id, node_id))
        return {SocketId(_str(m)) for m in members}

    async def socket_nodes(self, app_id: AppId, socket_ids: Sequence[SocketId]) -> list[str | None]:
        """The node holding each socket (``None``: not connected any more), in the order given."""
        with self.unavailable("socket_nodes"):
            nodes = await self.client.hmget(self.keys.socket_nodes(app_id), list(socket_ids))
        return [None if n is None else _str(n) for n in nodes]

    async def forget_node(self, node_id: str, app_id: AppId | None = None) -> None:
        """Drop a (dead, emptied) node's registry: its node set in ``app_id``, or its app list."""
        with self.unavailable("forget_node"):
            if app_id is not None:
                await self.client.delete(self.keys.node_sockets(app_id, node_id))
            else:
                await self.client.delete(self.keys.node_apps(node_id))
