"""``DynamoDBChannelStore``: the AWS store. One table; conditional transactions take each decision once.

The item layout, the reasoning behind it and its limits are in ``docs/dynamodb.md``. In short: every
transition that must be reported exactly once (channel occupied/vacated, member added/removed, user
online/offline) is one ``TransactWriteItems`` whose conditions only hold in one state of the counter
item (``attribute_not_exists`` / ``n = 1`` versus ``n > 1``). The store reads the counters first and
guesses from them; when a concurrent writer changed them meanwhile, the cancellation carries the item's
current value (``ReturnValuesOnConditionCheckFailure``) and the next attempt is right. Of two transactions
racing for the same transition only one can commit, so exactly one caller reports it. The app's
connection counter is a single-item conditional ``ADD`` (no transaction), so connects never contend, and a
connect writes its other items without a transaction either (:meth:`DynamoDBChannelStore.add_connection`).

Plumbing and layout: ``dynamodb_table``; users and watchlists: ``dynamodb_users``; liveness and the sweep
of silent connections: ``dynamodb_sweep``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

from shared.dynamodb.items import key, n, num, s, text
from shared.dynamodb.table import create_table
from shared.errors import StoreUnavailable
from shared.store.base import (
    CachedEvent,
    ChannelStats,
    Connection,
    Departure,
    JoinResult,
    LeaveResult,
    Member,
    PresenceFull,
    Subscription,
)
from shared.store.dynamodb_channels import ChannelItems
from shared.store.dynamodb_sweep import Sweep
from shared.store.dynamodb_table import (
    CACHE_SK,
    CONN_SK,
    ConnectionIds,
    Table,
    chan_pk,
    conn_pk,
    connection_from,
    connection_item,
    count_key,
)
from shared.store.dynamodb_users import UserRegistry
from shared.types import AppId, ChannelName, SocketId, UserId

__all__ = ["REMOVAL_LEASE_SECONDS", "DynamoDBChannelStore", "create_table"]

# A removal claims the connection for this long; past it, another removal may finish a crashed one.
REMOVAL_LEASE_SECONDS = 120


class DynamoDBChannelStore:
    """The ``ChannelStore`` on one DynamoDB table, plus the AWS-only extras the Lambda handlers need.

    Extras (not in the protocol): the socket id <-> API Gateway connectionId map
    (:meth:`socket_for_connection`, :meth:`connection_ids`) and the sweep's index (:meth:`due_connections`,
    :meth:`forget_entry`). socket -> connectionId pairs are cached in the container, so a broadcast right
    after ``sockets()`` resolves every recipient without another read.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_workers: int = 16,
        executor: Executor | None = None,
        max_connection_seconds: float = 7200,
        sweep_cycle_seconds: float = 300,
        id_cache_size: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table_name
        self.db = Table(
            table_name,
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            max_workers=max_workers,
            executor=executor,
        )
        self.ids = ConnectionIds(id_cache_size)
        self.users = UserRegistry(self.db, self.ids)
        self.channel_ops = ChannelItems(self.db, self.ids)
        self.sweep = Sweep(
            self.db, clock, max_connection_seconds=max_connection_seconds, cycle_seconds=sweep_cycle_seconds
        )
        self._clock = clock

    # -- connections ------------------------------------------------------------------------------------------

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        app_id, socket_id = connection.app_id, connection.socket_id
        # 1. The quota is decided by one conditional ADD on the app's counter: exact under any concurrency.
        if max_connections is not None:
            reserved = await self.db.conditional(
                "update_item",
                Key=count_key(app_id),
                UpdateExpression="ADD #n :one",
                ConditionExpression="attribute_not_exists(#n) OR #n < :max",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":one": n(1), ":max": n(max_connections)},
            )
            if reserved is None:
                return False
        else:
            await self._add_count(app_id, 1)
        # ``tok`` tells this call's own put, sent again by the SDK after a lost answer, from the record of an
        # earlier add of the same connection (which holds a slot of its own).
        token = secrets.token_hex(8)
        item = connection_item(connection, {"tok": s(token), "ttl": self.sweep.ttl(connection.connected_at)})
        # 2. The sweep entry, which is also the connectionId map, goes first; 3. the connection last, with a
        #    conditional PutItem. No transaction (2 write units per item): only the quota decides anything.
        #    Dying in between leaves an entry without its connection: a frame or $disconnect it leads to finds
        #    no connection, and the sweep drops it (it never judges entries younger than a connect can run).
        #    The other order could leave a connection that neither the sweep nor a $disconnect finds.
        try:
            await self.db.batch_write(puts=[self.sweep.entry(connection)])
            recorded = await self.db.conditional(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(#pk) OR #tok = :tok",
                ExpressionAttributeNames={"#pk": "pk", "#tok": "tok"},
                ExpressionAttributeValues={":tok": s(token)},
            )
        except StoreUnavailable:
            await self._add_count(app_id, -1)
            raise
        if recorded is None:  # recorded by an earlier add of the same connection, which holds its own slot
            await self._add_count(app_id, -1)
        self.ids.remember(app_id, socket_id, connection.connection_id)
        return True

    async def _add_count(self, app_id: str, delta: int) -> None:
        await self.db.conditional(
            "update_item",
            Key=count_key(app_id),
            UpdateExpression="ADD #n :delta",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":delta": n(delta)},
        )

    async def get_connection(self, app_id: AppId, socket_id: SocketId) -> Connection | None:
        item = await self.db.get(key(conn_pk(app_id, socket_id), CONN_SK))
        if item is None:
            return None
        connection = connection_from(item)
        self.ids.remember(app_id, socket_id, connection.connection_id)
        return connection

    async def connection_count(self, app_id: AppId) -> int:
        return int(num(await self.db.get(count_key(app_id)), "n"))

    async def socket_for_connection(self, connection_id: str) -> tuple[AppId, SocketId] | None:
        """The (app, socket) an API Gateway connectionId was recorded with (``$default``/``$disconnect``)."""
        cached = self.ids.by_cid.get(connection_id)
        if cached is not None:
            return cached
        found = await self.sweep.lookup(connection_id)
        if found is not None:
            self.ids.remember(found[0], found[1], connection_id)
        return found

    async def connection_ids(self, app_id: AppId, socket_ids: Collection[SocketId]) -> dict[SocketId, str]:
        """connectionIds of sockets, from the container cache or one ``BatchGetItem`` per 100 misses;
        sockets without a recorded connection are absent from the result (they are gone)."""
        found: dict[SocketId, str] = {}
        missing: list[SocketId] = []
        for socket_id in socket_ids:
            cid = self.ids.by_socket.get((app_id, socket_id))
            if cid is None:
                missing.append(socket_id)
            else:
                found[socket_id] = cid
        if missing:
            keys = [key(conn_pk(app_id, socket), CONN_SK) for socket in dict.fromkeys(missing)]
            for item in await self.db.batch_get(keys, projection="#sid, #cid"):
                cid = text(item, "cid")
                if cid is not None:
                    socket_id = SocketId(text(item, "sid") or "")
                    self.ids.remember(app_id, socket_id, cid)
                    found[socket_id] = cid
        return found

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        conn_key = key(conn_pk(app_id, socket_id), CONN_SK)
        # 1. Claim the removal and close the connection to new subscriptions and sign-ins (their transactions
        #    check ``closing``). Concurrent removals ($disconnect twice, a 410 prune) find the claim and
        #    report nothing; a removal that died half-way left a claim that expires after the lease, and
        #    the next removal (the sweep, a 410) finishes the job.
        now = self._clock()
        closed = await self.db.conditional(
            "update_item",
            Key=conn_key,
            UpdateExpression="SET #closing = :now",
            ConditionExpression="attribute_exists(#pk) AND (attribute_not_exists(#closing) OR #closing < :expired)",
            ExpressionAttributeNames={"#closing": "closing", "#pk": "pk"},
            ExpressionAttributeValues={":now": n(now), ":expired": n(now - REMOVAL_LEASE_SECONDS)},
            ReturnValues="ALL_NEW",
        )
        if closed is None:
            return None
        item = closed["Attributes"]
        connection = connection_from(item)
        # 2. Leave every channel of its list (``chans``, returned by the claim); each leave is its own decision,
        #    so a concurrent unsubscribe can take one, and each is reported by exactly one caller. The claim
        #    keeps subscribes out, so the list stays as it is until the connection item goes (``leave_closed``).
        channels = sorted(item.get("chans", {}).get("SS", []))
        results = await asyncio.gather(
            *(self.channel_ops.leave_closed(app_id, socket_id, ChannelName(channel)) for channel in channels)
        )
        left = tuple(r for r in results if r.left)
        offline = await self.users.unbind(connection) if connection.user_id is not None else False
        # 3. Forget the connection. Its conditional delete alone decides who releases the quota slot (no
        #    transaction: nothing else is decided here); the sweep entry (also the connectionId map) goes after
        #    it, so a removal dying in between leaves only an entry the sweep drops (its connection is gone;
        #    a $disconnect it leads to finds nothing).
        forgotten = await self.db.conditional(
            "delete_item",
            Key=conn_key,
            ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#pk": "pk"},
        )
        if forgotten is not None:
            entry = self.sweep.entry_key(app_id, socket_id, connection.connection_id)
            await asyncio.gather(self._add_count(app_id, -1), self.db.batch_write(deletes=[entry]))
        return Departure(connection=connection, left=left, user_offline=offline)

    # -- subscriptions ----------------------------------------------------------------------------------------

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        return await self.channel_ops.join(app_id, socket_id, channel, member, max_members)

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        return await self.channel_ops.leave(app_id, socket_id, channel)

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        return await self.channel_ops.subscription(app_id, socket_id, channel)

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        return await self.channel_ops.sockets(app_id, channel)

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        return await self.channel_ops.members(app_id, channel)

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        return await self.channel_ops.channels(app_id, prefix)

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        return await self.channel_ops.channel_stats(app_id, channel)

    # -- cache channels ---------------------------------------------------------------------------------------

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None:
        expires = self._clock() + ttl
        item = {**key(chan_pk(app_id, channel), CACHE_SK), "frame": {"B": frame}, "exp": n(expires)}
        await self.db.call("put_item", Item={**item, "ttl": n(int(expires) + 1)})

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None:
        item = await self.db.get(key(chan_pk(app_id, channel), CACHE_SK))
        if item is None:
            return None
        left = float(num(item, "exp")) - self._clock()
        if left <= 0:  # DynamoDB's TTL deletion is lazy: an expired item may still be there
            return None
        return CachedEvent(frame=bytes(item["frame"]["B"]), ttl=left)

    # -- users and watchlists (dynamodb_users) ---------------------------------------------------------------

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        return await self.users.sign_in(app_id, socket_id, user_id, user_data, watchlist)

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        return await self.users.user_sockets(app_id, user_id)

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        return await self.users.watchers(app_id, user_id)

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        return await self.users.online(app_id, user_ids)

    # -- liveness (dynamodb_sweep) ------------------------------------------------------------------------------

    async def due_connections(self) -> list[Connection]:
        """Connections the sweep should ask API Gateway about now: each comes up once per sweep cycle
        (``aws.stale_after_seconds``), whatever it does, with no write while it lives (``dynamodb_sweep``)."""
        return await self.sweep.due()

    async def forget_entry(self, connection: Connection) -> None:
        """Drop the sweep entry of a connection found unrecorded (a connect that died half-way)."""
        await self.sweep.forget(connection)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def close(self) -> None:
        await self.db.close()

    async def check_health(self) -> bool:
        try:
            await self.db.get(key("health", "health"))
        except StoreUnavailable:
            return False
        return True
