"""Subscriptions, presence members and channel counters in the DynamoDB store (``ChannelItems``).

Items (docs/dynamodb.md): the socket's channel list (``chans``, a string set on its connection item), the
channel partition's ``s#<socket>`` subscriber (with the connectionId, so fan-out needs no other read, and the
presence user),
``m#<user>`` members with their socket count and ``#stats`` (``n`` subscriptions, ``m`` members; exists
exactly while the channel is occupied), and the app's occupied-channel index. A join or a leave is one
transaction over these items whose counter conditions hold in exactly one state, so occupied/vacated and
member_added/removed are each reported by one caller (shared/store/dynamodb.py explains the guessing). A
removal's leave leaves the connection's list alone (:meth:`ChannelItems.leave_closed`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from typing import Any

from shared.dynamodb.items import Item, key, n, num, s, text
from shared.errors import StoreUnavailable
from shared.store.base import ChannelStats, JoinResult, LeaveResult, Member, PresenceFull, Subscription
from shared.store.dynamodb_table import (
    CONN_SK,
    MAX_ATTEMPTS,
    STATS_SK,
    ConnectionIds,
    Table,
    chan_pk,
    conn_pk,
    failed,
    index_pk,
    is_last,
    old,
)
from shared.types import AppId, ChannelName, SocketId, UserId


class ChannelItems:
    """The store's subscription operations on a channel's items (and the socket's own entries)."""

    def __init__(self, table: Table, ids: ConnectionIds) -> None:
        self.table = table
        self.ids = ids

    async def join(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        partition = chan_pk(app_id, channel)
        stats_key = key(partition, STATS_SK)
        # The counters are read first so the first guess is right unless another writer races this one.
        stats, member_now, connection_id = await asyncio.gather(
            self.table.get(stats_key, projection="#n"),
            self.table.get(key(partition, f"m#{member.user_id}"), projection="#n")
            if member is not None
            else _nothing(),
            self.connection_id(app_id, socket_id),
        )
        uid = {"uid": s(member.user_id)} if member is not None else {}
        sub_item: Item = {**key(partition, f"s#{socket_id}"), "sid": s(socket_id), **uid}
        if connection_id is not None:
            sub_item["cid"] = s(connection_id)
        one = {":one": n(1)}
        occupied = stats is not None  # the channel already has subscribers
        known_member = member_now is not None  # the user already has a socket in this presence channel
        for _ in range(MAX_ATTEMPTS):
            items = [
                # The socket's channel list is a set on its connection item: one element decides "not closing,
                # not subscribed yet" and records the channel (where a separate entry item took two).
                self.table.op(
                    "Update",
                    key=key(conn_pk(app_id, socket_id), CONN_SK),
                    update="ADD #chans :chans",
                    condition="attribute_exists(#pk) AND attribute_not_exists(#closing) "
                    "AND NOT contains(#chans, :channel)",
                    values={":chans": {"SS": [channel]}, ":channel": s(channel)},
                ),
                self.table.op("Put", item=sub_item),
            ]
            new_member = member is not None and not known_member
            stats_at = len(items)
            if not occupied:
                stats = {**stats_key, "n": n(1), **({"m": n(1)} if member is not None else {})}
                items.append(self.table.op("Put", item=stats, condition="attribute_not_exists(#pk)"))
                items.append(self.table.op("Put", item={**key(index_pk(app_id), channel)}))
            elif new_member:
                items.append(
                    self.table.op(
                        "Update",
                        key=stats_key,
                        update="ADD #n :one, #m :one",
                        condition="attribute_exists(#pk) AND (attribute_not_exists(#m) OR #m < :max)",
                        values={**one, ":max": n(max_members)},
                    )
                )
            else:
                items.append(
                    self.table.op(
                        "Update", key=stats_key, update="ADD #n :one", condition="attribute_exists(#pk)", values=one
                    )
                )
            member_at = len(items)
            if member is not None:
                member_key = key(partition, f"m#{member.user_id}")
                if new_member:
                    info = s(json.dumps(member.user_info, separators=(",", ":")))
                    member_item = {**member_key, "uid": s(member.user_id), "n": n(1), "info": info}
                    items.append(self.table.op("Put", item=member_item, condition="attribute_not_exists(#pk)"))
                else:
                    items.append(
                        self.table.op(
                            "Update",
                            key=member_key,
                            update="ADD #n :one",
                            condition="attribute_exists(#pk)",
                            values=one,
                        )
                    )
            reasons = await self.table.transact(items)
            if reasons is None:
                break
            if failed(reasons, 0):
                connection = old(reasons, 0)
                if connection is None or "closing" in connection:
                    return JoinResult(joined=False)
                return JoinResult(joined=False, subscription_count=await self._count(app_id, channel))  # already in
            member_failed = member is not None and failed(reasons, member_at)
            if member_failed:
                known_member = old(reasons, member_at) is not None
            if failed(reasons, stats_at):
                stats_now = old(reasons, stats_at)
                if stats_now is None:
                    occupied = False
                elif not occupied:
                    occupied = True
                elif new_member and not member_failed:
                    return PresenceFull(limit=max_members)
        else:
            raise StoreUnavailable(f"DynamoDB: no consistent state for subscribing to {channel} after retries")
        self.ids.remember(app_id, socket_id, connection_id)
        count = 1 if not occupied else await self._count(app_id, channel)
        member_added = member is not None and not known_member
        return JoinResult(joined=True, occupied=not occupied, member_added=member_added, subscription_count=count)

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        return await self.leave(app_id, socket_id, channel)

    async def leave(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        """Leave one channel: the subscriber item, the channel in the connection's list and the counters go
        in one transaction; the subscriber item's conditional delete is the decision."""
        return await self._leave(app_id, socket_id, channel, closed=False)

    async def leave_closed(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        """Leave one channel of a connection whose removal holds the claim (``closing`` is set).

        Nothing can subscribe the socket again and the connection item goes once every channel is left, so
        its channel list is left as it is: the transaction keeps only what decides, the subscriber item
        (against a concurrent unsubscribe) and the counters. A removal that dies half-way is finished by the
        next one from the same list; a channel already left has no subscriber item and is skipped.
        """
        return await self._leave(app_id, socket_id, channel, closed=True)

    async def _leave(self, app_id: AppId, socket_id: SocketId, channel: ChannelName, *, closed: bool) -> LeaveResult:
        partition = chan_pk(app_id, channel)
        stats_key = key(partition, STATS_SK)
        sub_key = key(partition, f"s#{socket_id}")
        # The counters are read first so the first guess is right unless another writer races this one.
        subscriber, stats = await asyncio.gather(
            self.table.get(sub_key, projection="#sid, #uid"), self.table.get(stats_key, projection="#n")
        )
        if subscriber is None:
            return LeaveResult(channel=channel, left=False)
        uid = text(subscriber, "uid")
        member_now = await self.table.get(key(partition, f"m#{uid}"), projection="#n") if uid else None
        values = {":one": n(1), ":minus": n(-1)}
        last = num(stats, "n") <= 1  # no other socket stays subscribed
        last_member = num(member_now, "n") <= 1  # the user keeps no other socket in this presence channel
        for _ in range(MAX_ATTEMPTS):
            same = "attribute_exists(#pk) AND " + ("#uid = :uid" if uid else "attribute_not_exists(#uid)")
            items = [self.table.op("Delete", key=sub_key, condition=same, values={":uid": s(uid)} if uid else None)]
            if not closed:  # the channel leaves the connection's list with it (a subscribe checks the list)
                items.append(
                    self.table.op(
                        "Update",
                        key=key(conn_pk(app_id, socket_id), CONN_SK),
                        update="DELETE #chans :chans",
                        condition="attribute_exists(#pk)",
                        values={":chans": {"SS": [channel]}},
                    )
                )
            stats_at = len(items)
            if last:
                items.append(self.table.op("Delete", key=stats_key, condition="#n = :one", values={":one": n(1)}))
                items.append(self.table.op("Delete", key=key(index_pk(app_id), channel)))
            else:
                update = "ADD #n :minus" + (", #m :minus" if uid and last_member else "")
                items.append(
                    self.table.op("Update", key=stats_key, update=update, condition="#n > :one", values=values)
                )
            member_at = len(items)
            if uid:
                member_key = key(partition, f"m#{uid}")
                if last_member:
                    items.append(self.table.op("Delete", key=member_key, condition="#n = :one", values={":one": n(1)}))
                else:
                    items.append(
                        self.table.op(
                            "Update", key=member_key, update="ADD #n :minus", condition="#n > :one", values=values
                        )
                    )
            reasons = await self.table.transact(items)
            if reasons is None:
                break
            if failed(reasons, 0) or (not closed and failed(reasons, 1)):
                return LeaveResult(channel=channel, left=False)
            if failed(reasons, stats_at):
                last = is_last(old(reasons, stats_at), channel)
            if uid and failed(reasons, member_at):
                last_member = is_last(old(reasons, member_at), channel)
        else:
            raise StoreUnavailable(f"DynamoDB: no consistent state for leaving {channel} after retries")
        removed = UserId(uid) if uid and last_member else None
        count = 0 if last else await self._count(app_id, channel)
        return LeaveResult(channel=channel, left=True, vacated=last, member_removed=removed, subscription_count=count)

    async def connection_id(self, app_id: AppId, socket_id: SocketId) -> str | None:
        """The socket's connectionId (cached, else read); ``None`` for a connection without one or none at all
        (then the subscribe transaction's check on the connection decides)."""
        cached = self.ids.by_socket.get((app_id, socket_id))
        if cached is not None:
            return cached
        item = await self.table.get(key(conn_pk(app_id, socket_id), CONN_SK), projection="#cid")
        connection_id = text(item, "cid") if item is not None else None
        self.ids.remember(app_id, socket_id, connection_id)
        return connection_id

    async def _count(self, app_id: str, channel: str) -> int:
        return int(num(await self.table.get(key(chan_pk(app_id, channel), STATS_SK), projection="#n"), "n"))

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> Subscription | None:
        subscriber = await self.table.get(key(chan_pk(app_id, channel), f"s#{socket_id}"), projection="#sid, #uid")
        if subscriber is None:
            return None
        uid = text(subscriber, "uid")
        return Subscription(user_id=UserId(uid) if uid is not None else None)

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        items = await self.table.query(chan_pk(app_id, channel), prefix="s#", projection="#sid, #cid")
        return self.ids.sockets(app_id, items)

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        items = await self.table.query(chan_pk(app_id, channel), prefix="m#", projection="#uid, #info")
        return {UserId(text(i, "uid") or ""): json.loads(text(i, "info") or "null") for i in items}

    def _stats(self, channel: str, item: Item | None) -> ChannelStats:
        user_count = int(num(item, "m")) if channel.startswith("presence-") else None
        return ChannelStats(subscription_count=int(num(item, "n")), user_count=user_count)

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        names = [text(i, "sk") or "" for i in await self.table.query(index_pk(app_id), prefix=prefix, projection="#sk")]
        stats = await self.table.batch_get([key(chan_pk(app_id, n), STATS_SK) for n in names], projection="#n, #m")
        by_pk = {text(i, "pk"): i for i in stats}
        result: dict[ChannelName, ChannelStats] = {}
        for name in sorted(names):
            item = by_pk.get(chan_pk(app_id, name))
            if item is not None and num(item, "n") > 0:
                result[ChannelName(name)] = self._stats(name, item)
        return result

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        return self._stats(channel, await self.table.get(key(chan_pk(app_id, channel), STATS_SK)))


async def _nothing() -> None:
    return None
