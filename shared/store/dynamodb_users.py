"""Signed-in users and watchlists in the DynamoDB store: who is online is decided once per transition.

Items (docs/dynamodb.md): ``user#<id>`` partitions hold one ``s#<socket>`` item per signed-in socket and a
``#stats`` counter that exists exactly while the user is online; ``watch#<id>`` partitions hold the sockets
whose user watches ``<id>``. Signing in adds the socket and bumps the counter in one transaction whose
condition only holds in one state (``attribute_not_exists`` = first socket = online); signing out is the
mirror (``n = 1`` = last socket = offline).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shared.dynamodb.items import key, n, num, s, text
from shared.errors import StoreUnavailable
from shared.store.base import Connection
from shared.store.dynamodb_table import (
    CONN_SK,
    MAX_ATTEMPTS,
    STATS_SK,
    ConnectionIds,
    Table,
    conn_pk,
    connection_from,
    failed,
    is_last,
    old,
    user_pk,
    watch_pk,
)
from shared.types import AppId, SocketId, UserId


class UserRegistry:
    def __init__(self, table: Table, ids: ConnectionIds) -> None:
        self.table = table
        self.ids = ids

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        table = self.table
        conn_key = key(conn_pk(app_id, socket_id), CONN_SK)
        item = await table.get(conn_key)
        if item is None or "closing" in item:
            return False
        connection = connection_from(item)
        fields = {":uid": s(user_id), ":udata": s(user_data), ":wl": {"L": [s(w) for w in watchlist]}}
        if connection.user_id == user_id:
            # Signing in again as the same user changes its data and watchlist, not its online state.
            await table.conditional(
                "update_item",
                Key=conn_key,
                UpdateExpression="SET #udata = :udata, #wl = :wl",
                ConditionExpression="#uid = :uid",
                ExpressionAttributeNames={"#udata": "udata", "#wl": "wl", "#uid": "uid"},
                ExpressionAttributeValues=fields,
            )
            stale = [w for w in connection.watchlist if w not in watchlist]
            await table.batch_write(deletes=[key(watch_pk(app_id, w), f"s#{socket_id}") for w in stale])
            await self._put_watchers(connection, watchlist)
            return False
        if connection.user_id is not None:
            await self.unbind(connection)  # another user: like the memory store, its offline is not reported
        # Watchers go in first: a removal racing this sign-in either sees the user (and deletes them) or
        # makes the transaction below fail (and this call deletes them).
        await self._put_watchers(connection, watchlist)
        bound = "#uid = :old" if connection.user_id is not None else "attribute_not_exists(#uid)"
        previous = {":old": s(connection.user_id)} if connection.user_id is not None else {}
        user_item = {**key(user_pk(app_id, user_id), f"s#{socket_id}"), "sid": s(socket_id)}
        if connection.connection_id is not None:
            user_item["cid"] = s(connection.connection_id)
        stats_key = key(user_pk(app_id, user_id), STATS_SK)
        online = await table.get(stats_key, projection="#n") is not None  # the first guess; a race corrects it
        for _ in range(MAX_ATTEMPTS):
            items = [
                table.op(
                    "Update",
                    key=conn_key,
                    update="SET #uid = :uid, #udata = :udata, #wl = :wl",
                    condition=f"attribute_exists(#pk) AND attribute_not_exists(#closing) AND {bound}",
                    values={**fields, **previous},
                ),
                table.op("Put", item=user_item),
            ]
            if online:
                stats = table.op(
                    "Update",
                    key=stats_key,
                    update="ADD #n :one",
                    condition="attribute_exists(#pk)",
                    values={":one": n(1)},
                )
            else:
                stats = table.op("Put", item={**stats_key, "n": n(1)}, condition="attribute_not_exists(#pk)")
            reasons = await table.transact([*items, stats])
            if reasons is None:
                return not online
            if failed(reasons, 0):
                await table.batch_write(deletes=[key(watch_pk(app_id, w), f"s#{socket_id}") for w in watchlist])
                return False
            online = old(reasons, 2) is not None
        raise StoreUnavailable(f"DynamoDB: no consistent state for signing in {user_id} after retries")

    async def _put_watchers(self, connection: Connection, watchlist: Iterable[UserId]) -> None:
        app_id, socket_id = connection.app_id, connection.socket_id
        cid = {"cid": s(connection.connection_id)} if connection.connection_id is not None else {}
        items = [{**key(watch_pk(app_id, w), f"s#{socket_id}"), "sid": s(socket_id), **cid} for w in watchlist]
        await self.table.batch_write(puts=items)

    async def unbind(self, connection: Connection) -> bool:
        """Drop the socket from its user's sockets and watchlists; ``True`` when it was the user's last
        socket (offline), reported by exactly one caller."""
        assert connection.user_id is not None
        table = self.table
        app_id, socket_id, user_id = connection.app_id, connection.socket_id, connection.user_id
        await table.batch_write(deletes=[key(watch_pk(app_id, w), f"s#{socket_id}") for w in connection.watchlist])
        stats_key = key(user_pk(app_id, user_id), STATS_SK)
        last = num(await table.get(stats_key, projection="#n"), "n") <= 1  # the first guess
        for _ in range(MAX_ATTEMPTS):
            if last:
                stats = table.op("Delete", key=stats_key, condition="#n = :one", values={":one": n(1)})
            else:
                values = {":one": n(1), ":minus": n(-1)}
                stats = table.op("Update", key=stats_key, update="ADD #n :minus", condition="#n > :one", values=values)
            mine = table.op(
                "Delete", key=key(user_pk(app_id, user_id), f"s#{socket_id}"), condition="attribute_exists(#pk)"
            )
            reasons = await table.transact([mine, stats])
            if reasons is None:
                return last
            if failed(reasons, 0):
                return False
            last = is_last(old(reasons, 1), f"user {user_id}")
        raise StoreUnavailable(f"DynamoDB: no consistent state for signing out {user_id} after retries")

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        items = await self.table.query(user_pk(app_id, user_id), prefix="s#", projection="#sid, #cid")
        return self.ids.sockets(app_id, items)

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        items = await self.table.query(watch_pk(app_id, user_id), prefix="s#", projection="#sid, #cid")
        return self.ids.sockets(app_id, items)

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        wanted = list(dict.fromkeys(user_ids))
        items = await self.table.batch_get([key(user_pk(app_id, u), STATS_SK) for u in wanted], projection="#n")
        prefix = len(user_pk(app_id, ""))
        return {UserId((text(i, "pk") or "")[prefix:]) for i in items if num(i, "n") > 0}
