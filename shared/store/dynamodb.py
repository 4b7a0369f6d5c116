"""``DynamoDBChannelStore``: the AWS store. One table; conditional transactions take each decision once.

The item layout, the reasoning behind it and its limits are in ``docs/dynamodb.md``. In short: every
transition that must be reported exactly once (channel occupied/vacated, member added/removed, user
online/offline) is one ``TransactWriteItems`` whose conditions only hold in one state of the counter
item (``attribute_not_exists`` / ``n = 1`` versus ``n > 1``). The store guesses the state, and a wrong
guess comes back as a cancellation carrying the item's current value (``ReturnValuesOnConditionCheckFailure``),
so the next attempt is right; a concurrent writer can make at most one of two competing transactions
commit, so exactly one caller sees each transition. The app's connection counter is a single-item
conditional ``ADD`` (no transaction), so connects never contend on it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from shared.aws_io import AWS_ERRORS, AwsCaller, error_code, is_throttling, unavailable
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
)
from shared.store.base import Subscription as SubscriptionInfo
from shared.types import AppId, ChannelName, SocketId, UserId

Item = dict[str, Any]  # a DynamoDB item in the low-level wire format: {"attr": {"S": "..."}}

CONN_SK = "conn"
STATS_SK = "#stats"
CACHE_SK = "#cache"
COUNT_SK = "#connections"
# DynamoDB deletes expired items lazily (often within hours, up to days); physical ``ttl`` only collects
# what cleanup missed, so it runs this long after the connection could have lived (API Gateway caps at 2 h).
TTL_GRACE_SECONDS = 24 * 3600
# A removal claims the connection for this long; past it, another removal may finish a crashed one.
REMOVAL_LEASE_SECONDS = 120
# Guess/retry rounds for one decision; a round fails only when another writer changed the same item.
MAX_ATTEMPTS = 12
# Cancellation reasons worth retrying after a pause: the item was busy, not in the wrong state.
RETRY_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
_PLACEHOLDER = re.compile(r"#(\w+)")


def create_table(client: Any, table_name: str) -> None:
    """Create the store's table as the CDK stack does (on-demand, ``pk``/``sk`` strings, TTL on ``ttl``).

    Synchronous: for tests, the emulator and scripts, with a boto3 client (moto or real).
    """
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})


# -- keys (docs/dynamodb.md "Items"); app ids never contain '#', so every prefix parses unambiguously ----------


def _key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _conn_pk(app_id: str, socket_id: str) -> str:
    return f"app#{app_id}#sock#{socket_id}"


def _chan_pk(app_id: str, channel: str) -> str:
    return f"app#{app_id}#ch#{channel}"


def _index_pk(app_id: str) -> str:
    return f"app#{app_id}#channels"


def _user_pk(app_id: str, user_id: str) -> str:
    return f"app#{app_id}#user#{user_id}"


def _watch_pk(app_id: str, user_id: str) -> str:
    return f"app#{app_id}#watch#{user_id}"


def _cid_key(connection_id: str) -> Item:
    return _key(f"cid#{connection_id}", "cid")


def _sweep_key(bucket: int, app_id: str, socket_id: str) -> Item:
    return _key(f"sweep#{bucket}", f"{app_id}#{socket_id}")


# -- attribute values -------------------------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else repr(float(value))}


def _str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def _num(item: Item | None, name: str) -> float:
    if not item or name not in item:
        return 0
    raw = item[name]["N"]
    return int(raw) if raw.lstrip("-").isdigit() else float(raw)


def _connection(item: Item) -> Connection:
    user_id = _str(item, "uid")
    return Connection(
        app_id=AppId(_str(item, "app") or ""),
        socket_id=SocketId(_str(item, "sid") or ""),
        connected_at=float(_num(item, "at")),
        user_id=UserId(user_id) if user_id is not None else None,
        user_data=_str(item, "udata"),
        watchlist=tuple(UserId(v["S"]) for v in item.get("wl", {}).get("L", [])),
        connection_id=_str(item, "cid"),
    )


def _failed(reasons: Sequence[tuple[str, Item | None]], index: int) -> bool:
    return index < len(reasons) and reasons[index][0] == "ConditionalCheckFailed"


def _old(reasons: Sequence[tuple[str, Item | None]], index: int) -> Item | None:
    return reasons[index][1] if index < len(reasons) else None


class DynamoDBChannelStore:
    """The ``ChannelStore`` on one DynamoDB table, plus the AWS-only extras the Lambda handlers need.

    Extras (not in the protocol): the socket id <-> API Gateway connectionId map
    (:meth:`socket_for_connection`, :meth:`connection_ids`), liveness for the sweep (:meth:`touch`,
    :meth:`stale_connections`). Mappings of immutable facts (socket -> connectionId) are cached in the
    container, so a broadcast right after ``sockets()`` resolves every recipient without another read.
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
        sweep_bucket_seconds: int = 60,
        id_cache_size: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table_name
        self._aws = AwsCaller(
            "dynamodb",
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            max_workers=max_workers,
            executor=executor,
            client_config={"retries": {"mode": "standard", "max_attempts": 4}},
        )
        self._max_connection_seconds = max_connection_seconds
        self._bucket_seconds = sweep_bucket_seconds
        self._clock = clock
        self._cids: OrderedDict[tuple[str, str], str] = OrderedDict()  # (app, socket) -> connectionId
        self._sockets_by_cid: OrderedDict[str, tuple[AppId, SocketId]] = OrderedDict()
        self._cache_size = id_cache_size

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _op(
        self,
        kind: str,
        *,
        key: Item | None = None,
        item: Item | None = None,
        update: str | None = None,
        condition: str | None = None,
        values: Item | None = None,
    ) -> dict[str, Any]:
        """One ``TransactWriteItems`` element; ``#name`` placeholders map to the attribute ``name``."""
        body: dict[str, Any] = {"TableName": self.table}
        if item is not None:
            body["Item"] = item
        if key is not None:
            body["Key"] = key
        if update is not None:
            body["UpdateExpression"] = update
        if condition is not None:
            body["ConditionExpression"] = condition
            body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        names = {f"#{n}": n for n in _PLACEHOLDER.findall(f"{update or ''} {condition or ''}")}
        if names:
            body["ExpressionAttributeNames"] = names
        if values:
            body["ExpressionAttributeValues"] = values
        return {kind: body}

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """A plain call; AWS failures become ``StoreUnavailable`` (conditional failures too: catch them first)."""
        try:
            return await self._aws.call(operation, TableName=self.table, **kwargs)
        except AWS_ERRORS as exc:
            raise unavailable(exc, f"DynamoDB {operation}") from exc

    async def _conditional(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write: ``None`` when the condition did not hold (a decision, not an error)."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await self._aws.call(operation, TableName=self.table, **kwargs)
            except AWS_ERRORS as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return None
                if code != "TransactionConflictException" or attempt == MAX_ATTEMPTS - 1:
                    raise unavailable(exc, f"DynamoDB {operation}") from exc
            await _pause(attempt)
        raise AssertionError("unreachable")

    async def _transact(self, items: list[dict[str, Any]]) -> list[tuple[str, Item | None]] | None:
        """Run a transaction: ``None`` when it committed, else the per-item (reason, old item) of the
        conditions that failed. Busy items (a concurrent transaction) are retried here with jitter."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                await self._aws.call("transact_write_items", TransactItems=items)
                return None
            except AWS_ERRORS as exc:
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    raw = getattr(exc, "response", {}).get("CancellationReasons") or []
                    reasons = [(str(r.get("Code") or "None"), r.get("Item")) for r in raw]
                    if any(c == "ConditionalCheckFailed" for c, _ in reasons):
                        return reasons
                    if not any(c in RETRY_REASONS for c, _ in reasons):
                        detail = "; ".join(f"{r.get('Code')}: {r.get('Message', '')}" for r in raw)
                        raise StoreUnavailable(f"DynamoDB TransactWriteItems cancelled: {detail}") from exc
                elif not (
                    is_throttling(exc) or code in ("TransactionConflictException", "TransactionInProgressException")
                ):
                    raise unavailable(exc, "DynamoDB TransactWriteItems") from exc
            await _pause(attempt)
        raise StoreUnavailable("DynamoDB TransactWriteItems: items stayed busy after retries (hot channel?)")

    async def _get(self, key: Item, projection: str | None = None) -> Item | None:
        kwargs: dict[str, Any] = {"Key": key, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
            kwargs["ExpressionAttributeNames"] = {f"#{n}": n for n in _PLACEHOLDER.findall(projection)}
        item: Item | None = (await self._call("get_item", **kwargs)).get("Item")
        return item

    async def _query(self, pk: str, prefix: str = "", projection: str | None = None) -> list[Item]:
        """Every item of a partition (optionally under a sort-key prefix), following ``LastEvaluatedKey``."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#pk = :pk" + (" AND begins_with(#sk, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": _s(pk), **({":prefix": _s(prefix)} if prefix else {})},
            "ConsistentRead": True,
        }
        names = "#pk #sk" if prefix else "#pk"
        if projection:
            kwargs["ProjectionExpression"] = projection
            names += " " + projection
        kwargs["ExpressionAttributeNames"] = {f"#{n}": n for n in _PLACEHOLDER.findall(names)}
        items: list[Item] = []
        while True:
            page = await self._call("query", **kwargs)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last

    async def _batch_get(self, keys: Sequence[Item], projection: str | None = None) -> list[Item]:
        """``BatchGetItem`` in chunks of 100, concurrently, retrying ``UnprocessedKeys``."""

        async def chunk(part: Sequence[Item]) -> list[Item]:
            request: dict[str, Any] = {"Keys": list(part), "ConsistentRead": True}
            if projection:
                request["ProjectionExpression"] = projection + ", #pk, #sk"
                request["ExpressionAttributeNames"] = {
                    f"#{n}": n for n in _PLACEHOLDER.findall(request["ProjectionExpression"])
                }
            found: list[Item] = []
            for attempt in range(MAX_ATTEMPTS):
                try:
                    page = await self._aws.call("batch_get_item", RequestItems={self.table: request})
                except AWS_ERRORS as exc:
                    raise unavailable(exc, "DynamoDB BatchGetItem") from exc
                found.extend(page.get("Responses", {}).get(self.table, []))
                left = page.get("UnprocessedKeys", {}).get(self.table)
                if not left:
                    return found
                request = left
                await _pause(attempt)
            raise StoreUnavailable("DynamoDB BatchGetItem: keys left unprocessed after retries")

        parts = [keys[i : i + 100] for i in range(0, len(keys), 100)]
        results = await asyncio.gather(*(chunk(part) for part in parts))
        return [item for part in results for item in part]

    async def _batch_write(self, puts: Sequence[Item] = (), deletes: Sequence[Item] = ()) -> None:
        """Idempotent puts/deletes (watchers, sweep entries) with ``BatchWriteItem`` in chunks of 25."""
        requests = [{"PutRequest": {"Item": item}} for item in puts] + [
            {"DeleteRequest": {"Key": key}} for key in deletes
        ]

        async def chunk(part: list[dict[str, Any]]) -> None:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    page = await self._aws.call("batch_write_item", RequestItems={self.table: part})
                except AWS_ERRORS as exc:
                    raise unavailable(exc, "DynamoDB BatchWriteItem") from exc
                part = page.get("UnprocessedItems", {}).get(self.table) or []
                if not part:
                    return
                await _pause(attempt)
            raise StoreUnavailable("DynamoDB BatchWriteItem: items left unprocessed after retries")

        await asyncio.gather(*(chunk(requests[i : i + 25]) for i in range(0, len(requests), 25)))

    def _remember(self, app_id: str, socket_id: str, connection_id: str | None) -> None:
        if connection_id is None:
            return
        self._cids[(app_id, socket_id)] = connection_id
        self._cids.move_to_end((app_id, socket_id))
        self._sockets_by_cid[connection_id] = (AppId(app_id), SocketId(socket_id))
        self._sockets_by_cid.move_to_end(connection_id)
        for cache in (self._cids, self._sockets_by_cid):
            while len(cache) > self._cache_size:
                cache.popitem(last=False)

    def _socket_ids(self, app_id: str, items: Iterable[Item]) -> list[SocketId]:
        """Socket ids of subscriber/user/watcher items, remembering the connectionIds they carry."""
        sockets: list[SocketId] = []
        for item in items:
            socket_id = _str(item, "sid") or ""
            self._remember(app_id, socket_id, _str(item, "cid"))
            sockets.append(SocketId(socket_id))
        return sockets

    def _bucket(self, at: float) -> int:
        return int(at // self._bucket_seconds)

    def _ttl(self, now: float) -> dict[str, str]:
        return _n(int(now + self._max_connection_seconds + TTL_GRACE_SECONDS))

    # -- connections ------------------------------------------------------------------------------------------

    async def add_connection(self, connection: Connection, max_connections: int | None) -> bool:
        app_id, socket_id = connection.app_id, connection.socket_id
        count_key = _key(f"app#{app_id}", COUNT_SK)
        # The quota is decided by one conditional ADD on the app's counter: exact under any concurrency.
        if max_connections is not None:
            reserved = await self._conditional(
                "update_item",
                Key=count_key,
                UpdateExpression="ADD #n :one",
                ConditionExpression="attribute_not_exists(#n) OR #n < :max",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":one": _n(1), ":max": _n(max_connections)},
            )
            if reserved is None:
                return False
        else:
            await self._add_count(app_id, 1)
        seen = connection.connected_at
        bucket = self._bucket(seen)
        item: Item = {
            **_key(_conn_pk(app_id, socket_id), CONN_SK),
            "app": _s(app_id),
            "sid": _s(socket_id),
            "at": _n(connection.connected_at),
            "seen": _n(seen),
            "sb": _n(bucket),
            "ttl": self._ttl(seen),
        }
        if connection.user_id is not None:
            item["uid"] = _s(connection.user_id)
        if connection.user_data is not None:
            item["udata"] = _s(connection.user_data)
        if connection.watchlist:
            item["wl"] = {"L": [_s(w) for w in connection.watchlist]}
        if connection.connection_id is not None:
            item["cid"] = _s(connection.connection_id)
        items = [
            self._op("Put", item=item, condition="attribute_not_exists(#pk)"),
            self._op("Put", item={**_sweep_key(bucket, app_id, socket_id), "app": _s(app_id), "sid": _s(socket_id)}),
        ]
        if connection.connection_id is not None:
            cid_item = {**_cid_key(connection.connection_id), "app": _s(app_id), "sid": _s(socket_id)}
            items.append(self._op("Put", item={**cid_item, "ttl": self._ttl(seen)}))
        try:
            reasons = await self._transact(items)
        except StoreUnavailable:
            await self._add_count(app_id, -1)
            raise
        if reasons is not None:
            # Only the connection's own condition can fail: it was recorded before (a retried $connect).
            await self._add_count(app_id, -1)
        self._remember(app_id, socket_id, connection.connection_id)
        return True

    async def _add_count(self, app_id: str, delta: int) -> None:
        await self._conditional(
            "update_item",
            Key=_key(f"app#{app_id}", COUNT_SK),
            UpdateExpression="ADD #n :delta",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":delta": _n(delta)},
        )

    async def get_connection(self, app_id: AppId, socket_id: SocketId) -> Connection | None:
        item = await self._get(_key(_conn_pk(app_id, socket_id), CONN_SK))
        if item is None:
            return None
        connection = _connection(item)
        self._remember(app_id, socket_id, connection.connection_id)
        return connection

    async def connection_count(self, app_id: AppId) -> int:
        return int(_num(await self._get(_key(f"app#{app_id}", COUNT_SK)), "n"))

    async def socket_for_connection(self, connection_id: str) -> tuple[AppId, SocketId] | None:
        """The (app, socket) an API Gateway connectionId was recorded with (``$default``/``$disconnect``)."""
        cached = self._sockets_by_cid.get(connection_id)
        if cached is not None:
            return cached
        item = await self._get(_cid_key(connection_id))
        if item is None:
            return None
        app_id, socket_id = AppId(_str(item, "app") or ""), SocketId(_str(item, "sid") or "")
        self._remember(app_id, socket_id, connection_id)
        return app_id, socket_id

    async def connection_ids(self, app_id: AppId, socket_ids: Collection[SocketId]) -> dict[SocketId, str]:
        """connectionIds of sockets, from the container cache or one ``BatchGetItem`` per 100 misses;
        sockets without a recorded connection are absent from the result (they are gone)."""
        found: dict[SocketId, str] = {}
        missing: list[SocketId] = []
        for socket_id in socket_ids:
            cid = self._cids.get((app_id, socket_id))
            if cid is None:
                missing.append(socket_id)
            else:
                found[socket_id] = cid
        if missing:
            keys = [_key(_conn_pk(app_id, s), CONN_SK) for s in dict.fromkeys(missing)]
            for item in await self._batch_get(keys, projection="#sid, #cid"):
                cid = _str(item, "cid")
                if cid is not None:
                    socket_id = SocketId(_str(item, "sid") or "")
                    self._remember(app_id, socket_id, cid)
                    found[socket_id] = cid
        return found

    async def remove_connection(self, app_id: AppId, socket_id: SocketId) -> Departure | None:
        conn_key = _key(_conn_pk(app_id, socket_id), CONN_SK)
        # 1. Claim the removal and close the connection to new subscriptions and sign-ins (their transactions
        #    check ``closing``). Concurrent removals ($disconnect twice, a 410 prune) find the claim and
        #    report nothing; a removal that died half-way left a claim that expires after the lease, and
        #    the next removal (the sweep, a 410) finishes the job.
        now = self._clock()
        closed = await self._conditional(
            "update_item",
            Key=conn_key,
            UpdateExpression="SET #closing = :now",
            ConditionExpression="attribute_exists(#pk) AND (attribute_not_exists(#closing) OR #closing < :expired)",
            ExpressionAttributeNames={"#closing": "closing", "#pk": "pk"},
            ExpressionAttributeValues={":now": _n(now), ":expired": _n(now - REMOVAL_LEASE_SECONDS)},
            ReturnValues="ALL_NEW",
        )
        if closed is None:
            return None
        item = closed["Attributes"]
        connection = _connection(item)
        # 2. Leave every channel; each leave is its own decision, so a concurrent unsubscribe can take one,
        #    and each is reported by exactly one caller.
        entries = await self._query(_conn_pk(app_id, socket_id), prefix="c#")
        results = await asyncio.gather(
            *(self._leave(app_id, socket_id, ChannelName((_str(e, "sk") or "")[2:]), e) for e in entries)
        )
        left = tuple(r for r in results if r.left)
        offline = await self._unbind_user(connection) if connection.user_id is not None else False
        # 3. Forget the connection itself; the quota slot is released by the caller whose delete wins.
        items = [
            self._op("Delete", key=conn_key, condition="attribute_exists(#pk)"),
            self._op("Delete", key=_sweep_key(int(_num(item, "sb")), app_id, socket_id)),
        ]
        if connection.connection_id is not None:
            items.append(self._op("Delete", key=_cid_key(connection.connection_id)))
        if await self._transact(items) is None:
            await self._add_count(app_id, -1)
        return Departure(connection=connection, left=left, user_offline=offline)

    # -- subscriptions ----------------------------------------------------------------------------------------

    async def subscribe(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, member: Member | None, max_members: int
    ) -> JoinResult | PresenceFull:
        chan_pk = _chan_pk(app_id, channel)
        stats_key = _key(chan_pk, STATS_SK)
        # The counters are read first so the first guess is right unless another writer races this one.
        stats, member_now, connection_id = await asyncio.gather(
            self._get(stats_key, projection="#n"),
            self._get(_key(chan_pk, f"m#{member.user_id}"), projection="#n") if member is not None else _none(),
            self._connection_id(app_id, socket_id),
        )
        uid = {"uid": _s(member.user_id)} if member is not None else {}
        sub_item: Item = {**_key(chan_pk, f"s#{socket_id}"), "sid": _s(socket_id), **uid}
        if connection_id is not None:
            sub_item["cid"] = _s(connection_id)
        one = {":one": _n(1)}
        occupied = stats is not None  # the channel already has subscribers
        known_member = member_now is not None  # the user already has a socket in this presence channel
        for _ in range(MAX_ATTEMPTS):
            items = [
                self._op(
                    "ConditionCheck",
                    key=_key(_conn_pk(app_id, socket_id), CONN_SK),
                    condition="attribute_exists(#pk) AND attribute_not_exists(#closing)",
                ),
                self._op(
                    "Put",
                    item={**_key(_conn_pk(app_id, socket_id), f"c#{channel}"), **uid},
                    condition="attribute_not_exists(#pk)",
                ),
                self._op("Put", item=sub_item),
            ]
            new_member = member is not None and not known_member
            stats_at = len(items)
            if not occupied:
                stats = {**stats_key, "n": _n(1), **({"m": _n(1)} if member is not None else {})}
                items.append(self._op("Put", item=stats, condition="attribute_not_exists(#pk)"))
                items.append(self._op("Put", item={**_key(_index_pk(app_id), channel)}))
            elif new_member:
                items.append(
                    self._op(
                        "Update",
                        key=stats_key,
                        update="ADD #n :one, #m :one",
                        condition="attribute_exists(#pk) AND (attribute_not_exists(#m) OR #m < :max)",
                        values={**one, ":max": _n(max_members)},
                    )
                )
            else:
                items.append(
                    self._op(
                        "Update", key=stats_key, update="ADD #n :one", condition="attribute_exists(#pk)", values=one
                    )
                )
            member_at = len(items)
            if member is not None:
                member_key = _key(chan_pk, f"m#{member.user_id}")
                if new_member:
                    info = _s(json.dumps(member.user_info, separators=(",", ":")))
                    member_item = {**member_key, "uid": _s(member.user_id), "n": _n(1), "info": info}
                    items.append(self._op("Put", item=member_item, condition="attribute_not_exists(#pk)"))
                else:
                    items.append(
                        self._op(
                            "Update",
                            key=member_key,
                            update="ADD #n :one",
                            condition="attribute_exists(#pk)",
                            values=one,
                        )
                    )
            reasons = await self._transact(items)
            if reasons is None:
                break
            if _failed(reasons, 0):
                return JoinResult(joined=False)
            if _failed(reasons, 1):
                return JoinResult(joined=False, subscription_count=await self._count(app_id, channel))
            member_failed = member is not None and _failed(reasons, member_at)
            if member_failed:
                known_member = _old(reasons, member_at) is not None
            if _failed(reasons, stats_at):
                stats_now = _old(reasons, stats_at)
                if stats_now is None:
                    occupied = False
                elif not occupied:
                    occupied = True
                elif new_member and not member_failed:
                    return PresenceFull(limit=max_members)
        else:
            raise StoreUnavailable(f"DynamoDB: no consistent state for subscribing to {channel} after retries")
        self._remember(app_id, socket_id, connection_id)
        count = 1 if not occupied else await self._count(app_id, channel)
        member_added = member is not None and not known_member
        return JoinResult(joined=True, occupied=not occupied, member_added=member_added, subscription_count=count)

    async def unsubscribe(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> LeaveResult:
        return await self._leave(app_id, socket_id, channel)

    async def _leave(
        self, app_id: AppId, socket_id: SocketId, channel: ChannelName, entry: Item | None = None
    ) -> LeaveResult:
        """Leave one channel; ``entry`` is the socket's own ``c#<channel>`` item when already read."""
        entry_key = _key(_conn_pk(app_id, socket_id), f"c#{channel}")
        chan_pk = _chan_pk(app_id, channel)
        stats_key = _key(chan_pk, STATS_SK)
        # The counters are read first so the first guess is right unless another writer races this one.
        entry, stats = await asyncio.gather(
            self._get(entry_key) if entry is None else _just(entry), self._get(stats_key, projection="#n")
        )
        if entry is None:
            return LeaveResult(channel=channel, left=False)
        uid = _str(entry, "uid")
        member_now = await self._get(_key(chan_pk, f"m#{uid}"), projection="#n") if uid else None
        values = {":one": _n(1), ":minus": _n(-1)}
        last = _num(stats, "n") <= 1  # no other socket stays subscribed
        last_member = _num(member_now, "n") <= 1  # the user keeps no other socket in this presence channel
        for _ in range(MAX_ATTEMPTS):
            same_entry = "attribute_exists(#pk) AND " + ("#uid = :uid" if uid else "attribute_not_exists(#uid)")
            items = [
                self._op("Delete", key=entry_key, condition=same_entry, values={":uid": _s(uid)} if uid else None),
                self._op("Delete", key=_key(chan_pk, f"s#{socket_id}")),
            ]
            stats_at = len(items)
            if last:
                items.append(self._op("Delete", key=stats_key, condition="#n = :one", values={":one": _n(1)}))
                items.append(self._op("Delete", key=_key(_index_pk(app_id), channel)))
            else:
                update = "ADD #n :minus" + (", #m :minus" if uid and last_member else "")
                items.append(self._op("Update", key=stats_key, update=update, condition="#n > :one", values=values))
            member_at = len(items)
            if uid:
                member_key = _key(chan_pk, f"m#{uid}")
                if last_member:
                    items.append(self._op("Delete", key=member_key, condition="#n = :one", values={":one": _n(1)}))
                else:
                    items.append(
                        self._op("Update", key=member_key, update="ADD #n :minus", condition="#n > :one", values=values)
                    )
            reasons = await self._transact(items)
            if reasons is None:
                break
            if _failed(reasons, 0):
                return LeaveResult(channel=channel, left=False)
            if _failed(reasons, stats_at):
                last = self._is_last(_old(reasons, stats_at), channel)
            if uid and _failed(reasons, member_at):
                last_member = self._is_last(_old(reasons, member_at), channel)
        else:
            raise StoreUnavailable(f"DynamoDB: no consistent state for leaving {channel} after retries")
        removed = UserId(uid) if uid and last_member else None
        count = 0 if last else await self._count(app_id, channel)
        return LeaveResult(channel=channel, left=True, vacated=last, member_removed=removed, subscription_count=count)

    @staticmethod
    def _is_last(counter: Item | None, what: str) -> bool:
        """Whether a counter the failed condition returned shows one holder left (ours)."""
        if counter is None:
            raise StoreUnavailable(f"DynamoDB: {what} has an entry but no counter item")
        return _num(counter, "n") <= 1

    async def _connection_id(self, app_id: AppId, socket_id: SocketId) -> str | None:
        """The socket's connectionId (cached, else read); ``None`` for a connection without one or none at all
        (then the subscribe transaction's check on the connection decides)."""
        cached = self._cids.get((app_id, socket_id))
        if cached is not None:
            return cached
        connection = await self.get_connection(app_id, socket_id)
        return connection.connection_id if connection is not None else None

    async def _count(self, app_id: str, channel: str) -> int:
        return int(_num(await self._get(_key(_chan_pk(app_id, channel), STATS_SK), projection="#n"), "n"))

    async def subscription(self, app_id: AppId, socket_id: SocketId, channel: ChannelName) -> SubscriptionInfo | None:
        entry = await self._get(_key(_conn_pk(app_id, socket_id), f"c#{channel}"))
        if entry is None:
            return None
        uid = _str(entry, "uid")
        return SubscriptionInfo(user_id=UserId(uid) if uid is not None else None)

    async def sockets(self, app_id: AppId, channel: ChannelName) -> Collection[SocketId]:
        items = await self._query(_chan_pk(app_id, channel), prefix="s#", projection="#sid, #cid")
        return self._socket_ids(app_id, items)

    async def members(self, app_id: AppId, channel: ChannelName) -> Mapping[UserId, Any]:
        items = await self._query(_chan_pk(app_id, channel), prefix="m#", projection="#uid, #info")
        return {UserId(_str(i, "uid") or ""): json.loads(_str(i, "info") or "null") for i in items}

    def _stats(self, channel: str, item: Item | None) -> ChannelStats:
        user_count = int(_num(item, "m")) if channel.startswith("presence-") else None
        return ChannelStats(subscription_count=int(_num(item, "n")), user_count=user_count)

    async def channels(self, app_id: AppId, prefix: str = "") -> Mapping[ChannelName, ChannelStats]:
        names = [_str(i, "sk") or "" for i in await self._query(_index_pk(app_id), prefix=prefix, projection="#sk")]
        stats = await self._batch_get([_key(_chan_pk(app_id, n), STATS_SK) for n in names], projection="#n, #m")
        by_pk = {_str(i, "pk"): i for i in stats}
        result: dict[ChannelName, ChannelStats] = {}
        for name in sorted(names):
            item = by_pk.get(_chan_pk(app_id, name))
            if item is not None and _num(item, "n") > 0:
                result[ChannelName(name)] = self._stats(name, item)
        return result

    async def channel_stats(self, app_id: AppId, channel: ChannelName) -> ChannelStats:
        return self._stats(channel, await self._get(_key(_chan_pk(app_id, channel), STATS_SK)))

    # -- users and watchlists ---------------------------------------------------------------------------------

    async def sign_in(
        self, app_id: AppId, socket_id: SocketId, user_id: UserId, user_data: str, watchlist: tuple[UserId, ...]
    ) -> bool:
        conn_key = _key(_conn_pk(app_id, socket_id), CONN_SK)
        item = await self._get(conn_key)
        if item is None or "closing" in item:
            return False
        connection = _connection(item)
        fields = {":uid": _s(user_id), ":udata": _s(user_data), ":wl": {"L": [_s(w) for w in watchlist]}}
        if connection.user_id == user_id:
            # Signing in again as the same user changes its data and watchlist, not its online state.
            await self._conditional(
                "update_item",
                Key=conn_key,
                UpdateExpression="SET #udata = :udata, #wl = :wl",
                ConditionExpression="#uid = :uid",
                ExpressionAttributeNames={"#udata": "udata", "#wl": "wl", "#uid": "uid"},
                ExpressionAttributeValues=fields,
            )
            stale = [w for w in connection.watchlist if w not in watchlist]
            await self._batch_write(deletes=[_key(_watch_pk(app_id, w), f"s#{socket_id}") for w in stale])
            await self._put_watchers(connection, watchlist)
            return False
        if connection.user_id is not None:
            await self._unbind_user(connection)  # another user: like the memory store, its offline is not reported
        # Watchers go in first: a removal racing this sign-in either sees the user (and deletes them) or
        # makes the transaction below fail (and this call deletes them).
        await self._put_watchers(connection, watchlist)
        bound = "#uid = :old" if connection.user_id is not None else "attribute_not_exists(#uid)"
        old = {":old": _s(connection.user_id)} if connection.user_id is not None else {}
        user_pk = _user_pk(app_id, user_id)
        user_item = {**_key(user_pk, f"s#{socket_id}"), "sid": _s(socket_id)}
        if connection.connection_id is not None:
            user_item["cid"] = _s(connection.connection_id)
        online_before = False  # guess: this is the user's first signed-in socket
        for _ in range(MAX_ATTEMPTS):
            items = [
                self._op(
                    "Update",
                    key=conn_key,
                    update="SET #uid = :uid, #udata = :udata, #wl = :wl",
                    condition=f"attribute_exists(#pk) AND attribute_not_exists(#closing) AND {bound}",
                    values={**fields, **old},
                ),
                self._op("Put", item=user_item),
            ]
            if online_before:
                stats = self._op(
                    "Update",
                    key=_key(user_pk, STATS_SK),
                    update="ADD #n :one",
                    condition="attribute_exists(#pk)",
                    values={":one": _n(1)},
                )
            else:
                stats_item = {**_key(user_pk, STATS_SK), "n": _n(1)}
                stats = self._op("Put", item=stats_item, condition="attribute_not_exists(#pk)")
            reasons = await self._transact([*items, stats])
            if reasons is None:
                return not online_before
            if _failed(reasons, 0):
                keys = [_key(_watch_pk(app_id, w), f"s#{socket_id}") for w in watchlist]
                await self._batch_write(deletes=keys)
                return False
            online_before = _old(reasons, 2) is not None
        raise StoreUnavailable(f"DynamoDB: no consistent state for signing in {user_id} after retries")

    async def _put_watchers(self, connection: Connection, watchlist: Iterable[UserId]) -> None:
        app_id, socket_id = connection.app_id, connection.socket_id
        cid = {"cid": _s(connection.connection_id)} if connection.connection_id is not None else {}
        items = [{**_key(_watch_pk(app_id, w), f"s#{socket_id}"), "sid": _s(socket_id), **cid} for w in watchlist]
        await self._batch_write(puts=items)

    async def _unbind_user(self, connection: Connection) -> bool:
        """Drop the socket from its user's sockets; ``True`` when it was the user's last one (offline)."""
        assert connection.user_id is not None
        app_id, socket_id, user_id = connection.app_id, connection.socket_id, connection.user_id
        await self._batch_write(deletes=[_key(_watch_pk(app_id, w), f"s#{socket_id}") for w in connection.watchlist])
        user_pk = _user_pk(app_id, user_id)
        stats_key = _key(user_pk, STATS_SK)
        last = False  # guess: the user keeps another signed-in socket
        for _ in range(MAX_ATTEMPTS):
            if last:
                stats = self._op("Delete", key=stats_key, condition="#n = :one", values={":one": _n(1)})
            else:
                values = {":one": _n(1), ":minus": _n(-1)}
                stats = self._op("Update", key=stats_key, update="ADD #n :minus", condition="#n > :one", values=values)
            items = [self._op("Delete", key=_key(user_pk, f"s#{socket_id}"), condition="attribute_exists(#pk)"), stats]
            reasons = await self._transact(items)
            if reasons is None:
                return last
            if _failed(reasons, 0):
                return False
            last = self._is_last(_old(reasons, 1), f"user {user_id}")
        raise StoreUnavailable(f"DynamoDB: no consistent state for signing out {user_id} after retries")

    async def user_sockets(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        items = await self._query(_user_pk(app_id, user_id), prefix="s#", projection="#sid, #cid")
        return self._socket_ids(app_id, items)

    async def watchers(self, app_id: AppId, user_id: UserId) -> Collection[SocketId]:
        items = await self._query(_watch_pk(app_id, user_id), prefix="s#", projection="#sid, #cid")
        return self._socket_ids(app_id, items)

    async def online(self, app_id: AppId, user_ids: Iterable[UserId]) -> set[UserId]:
        wanted = list(dict.fromkeys(user_ids))
        items = await self._batch_get([_key(_user_pk(app_id, u), STATS_SK) for u in wanted], projection="#n")
        prefix = len(_user_pk(app_id, ""))
        return {UserId((_str(i, "pk") or "")[prefix:]) for i in items if _num(i, "n") > 0}

    # -- cache channels ---------------------------------------------------------------------------------------

    async def cache_put(self, app_id: AppId, channel: ChannelName, frame: bytes, ttl: float) -> None:
        expires = self._clock() + ttl
        item = {**_key(_chan_pk(app_id, channel), CACHE_SK), "frame": {"B": frame}, "exp": _n(expires)}
        await self._call("put_item", Item={**item, "ttl": _n(int(expires) + 1)})

    async def cache_get(self, app_id: AppId, channel: ChannelName) -> CachedEvent | None:
        item = await self._get(_key(_chan_pk(app_id, channel), CACHE_SK))
        if item is None:
            return None
        left = float(_num(item, "exp")) - self._clock()
        if left <= 0:  # DynamoDB's TTL deletion is lazy: an expired item may still be there
            return None
        return CachedEvent(frame=bytes(item["frame"]["B"]), ttl=left)

    # -- liveness (the AWS sweep) -----------------------------------------------------------------------------

    async def touch(self, app_id: AppId, socket_id: SocketId) -> bool:
        """Record a sign of life (one small write); ``False`` when the connection is gone or closing.

        The sweep entry is not moved here (that would be three writes): :meth:`stale_connections` moves
        it lazily when it finds the connection seen later than its bucket.
        """
        now = self._clock()
        done = await self._conditional(
            "update_item",
            Key=_key(_conn_pk(app_id, socket_id), CONN_SK),
            UpdateExpression="SET #seen = :now, #ttl = :ttl",
            ConditionExpression="attribute_exists(#pk) AND attribute_not_exists(#closing)",
            ExpressionAttributeNames={"#seen": "seen", "#ttl": "ttl", "#pk": "pk", "#closing": "closing"},
            ExpressionAttributeValues={":now": _n(now), ":ttl": self._ttl(now)},
        )
        return done is not None

    async def stale_connections(self, silent_for: float, limit: int = 100) -> list[Connection]:
        """Connections with no sign of life (connect or :meth:`touch`) for ``silent_for`` seconds.

        The caller must settle each one, by removing it (API Gateway says it is gone, or it is older
        than API Gateway's 2 h cap) or by touching it (it is alive): until then it is returned again.
        Buckets of one ``sweep_bucket_seconds`` are read from a cursor, so a sweep reads only what
        became due since the last one (docs/dynamodb.md "Sweep").
        """
        now = self._clock()
        last = self._bucket(now - silent_for) - 1
        cursor_key = _key("sweep", "cursor")
        cursor = await self._get(cursor_key)
        lookback = int(self._max_connection_seconds // self._bucket_seconds) + 2
        start = int(_num(cursor, "b")) + 1 if cursor is not None else last - lookback
        done_until = start - 1
        blocked = False
        stale: list[Connection] = []
        for bucket in range(start, min(last, start + 4 * lookback) + 1):
            entries = await self._query(f"sweep#{bucket}")
            if entries:
                keys = [_key(_conn_pk(_str(e, "app") or "", _str(e, "sid") or ""), CONN_SK) for e in entries]
                items = {_str(i, "pk"): i for i in await self._batch_get(keys)}
                garbage: list[Item] = []
                for entry, key in zip(entries, keys, strict=True):
                    item = items.get(key["pk"]["S"])
                    if item is None or int(_num(item, "sb")) != bucket:
                        garbage.append(_key(f"sweep#{bucket}", _str(entry, "sk") or ""))
                    elif self._bucket(float(_num(item, "seen"))) > bucket:
                        await self._refile(item, bucket)
                    else:
                        blocked = True
                        if len(stale) < limit:
                            stale.append(_connection(item))
                await self._batch_write(deletes=garbage)
            if not blocked:
                done_until = bucket
            if len(stale) >= limit:
                break
        if done_until >= start:
            await self._conditional(
                "update_item",
                Key=cursor_key,
                UpdateExpression="SET #b = :b",
                ConditionExpression="attribute_not_exists(#b) OR #b < :b",
                ExpressionAttributeNames={"#b": "b"},
                ExpressionAttributeValues={":b": _n(done_until)},
            )
        return stale

    async def _refile(self, item: Item, bucket: int) -> None:
        """Move a touched connection's sweep entry to the bucket of its last sign of life."""
        app_id, socket_id = _str(item, "app") or "", _str(item, "sid") or ""
        new = self._bucket(float(_num(item, "seen")))
        entry = {**_sweep_key(new, app_id, socket_id), "app": _s(app_id), "sid": _s(socket_id)}
        items = [
            self._op("Put", item=entry),
            self._op("Delete", key=_sweep_key(bucket, app_id, socket_id)),
            self._op(
                "Update",
                key=_key(_conn_pk(app_id, socket_id), CONN_SK),
                update="SET #sb = :new",
                condition="attribute_exists(#pk) AND #sb = :old",
                values={":new": _n(new), ":old": _n(bucket)},
            ),
        ]
        if await self._transact(items) is not None:  # gone or moved by another sweep: this entry is garbage
            await self._batch_write(deletes=[_sweep_key(bucket, app_id, socket_id)])

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def close(self) -> None:
        await self._aws.close()

    async def check_health(self) -> bool:
        try:
            await self._get(_key("health", "health"))
        except StoreUnavailable:
            return False
        return True


async def _none() -> None:
    return None


async def _just(item: Item) -> Item:
    return item


async def _pause(attempt: int) -> None:
    """Full-jitter exponential backoff: 10 ms doubling, capped at 0.5 s."""
    await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
