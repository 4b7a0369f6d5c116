"""The DynamoDB store's table: its item layout (docs/dynamodb.md "Items") and the requests the store makes.

Requests run off the event loop (``AwsCaller``); AWS failures become ``StoreUnavailable``, except the
outcomes the store decides with: a failed condition (``conditional`` returns ``None``; ``transact`` returns
the cancellation reasons with the items as they were). Busy items (another transaction in flight) and
unprocessed batch keys are retried here with jittered backoff.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from shared.aws_io import AWS_ERRORS, AwsCaller, error_code, is_throttling, unavailable
from shared.dynamodb.items import Item, key, n, num, s, text
from shared.errors import StoreUnavailable
from shared.store.base import Connection
from shared.types import AppId, SocketId, UserId

Reasons = list[tuple[str, Item | None]]  # per transaction element: (cancellation code, item as it was)

CONN_SK = "conn"
STATS_SK = "#stats"
CACHE_SK = "#cache"
COUNT_SK = "#connections"
# Guess/retry rounds for one decision; a round fails only when another writer changed the same item.
MAX_ATTEMPTS = 12
# Cancellation reasons worth retrying after a pause: the item was busy, not in the wrong state.
RETRY_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
PLACEHOLDER = re.compile(r"#(\w+)")


# -- keys; app ids never contain '#', so every prefix parses unambiguously ----------------------------------


def conn_pk(app_id: str, socket_id: str) -> str:
    """The socket's partition: its connection item and one ``c#<channel>`` entry per subscription."""
    return f"app#{app_id}#sock#{socket_id}"


def chan_pk(app_id: str, channel: str) -> str:
    """The channel's partition: ``#stats``, ``#cache``, ``s#<socket>`` subscribers, ``m#<user>`` members."""
    return f"app#{app_id}#ch#{channel}"


def index_pk(app_id: str) -> str:
    """The app's occupied channels, one item per channel (sort key = name, for prefix listings)."""
    return f"app#{app_id}#channels"


def user_pk(app_id: str, user_id: str) -> str:
    return f"app#{app_id}#user#{user_id}"


def watch_pk(app_id: str, user_id: str) -> str:
    return f"app#{app_id}#watch#{user_id}"


def count_key(app_id: str) -> Item:
    return key(f"app#{app_id}", COUNT_SK)


def connection_from(item: Item) -> Connection:
    user_id = text(item, "uid")
    return Connection(
        app_id=AppId(text(item, "app") or ""),
        socket_id=SocketId(text(item, "sid") or ""),
        connected_at=float(num(item, "at")),
        user_id=UserId(user_id) if user_id is not None else None,
        user_data=text(item, "udata"),
        watchlist=tuple(UserId(v["S"]) for v in item.get("wl", {}).get("L", [])),
        connection_id=text(item, "cid"),
    )


def connection_item(connection: Connection, extra: Item) -> Item:
    """The connection's item (what :func:`connection_from` reads back), with the store's ``extra`` attributes."""
    item: Item = {
        **key(conn_pk(connection.app_id, connection.socket_id), CONN_SK),
        "app": s(connection.app_id),
        "sid": s(connection.socket_id),
        "at": n(connection.connected_at),
        **extra,
    }
    if connection.user_id is not None:
        item["uid"] = s(connection.user_id)
    if connection.user_data is not None:
        item["udata"] = s(connection.user_data)
    if connection.watchlist:
        item["wl"] = {"L": [s(w) for w in connection.watchlist]}
    if connection.connection_id is not None:
        item["cid"] = s(connection.connection_id)
    return item


def failed(reasons: Reasons, index: int) -> bool:
    return index < len(reasons) and reasons[index][0] == "ConditionalCheckFailed"


def old(reasons: Reasons, index: int) -> Item | None:
    """The item as it was when element ``index`` of a cancelled transaction failed (``None``: absent)."""
    return reasons[index][1] if index < len(reasons) else None


def is_last(counter: Item | None, what: str) -> bool:
    """Whether a counter returned by a failed condition shows one holder left (the caller's own)."""
    if counter is None:
        raise StoreUnavailable(f"DynamoDB: {what} has an entry but no counter item")
    return num(counter, "n") <= 1


async def pause(attempt: int) -> None:
    """Full-jitter exponential backoff: 10 ms doubling, capped at 0.5 s."""
    await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))


class ConnectionIds:
    """socket <-> connectionId, cached in the container: the pair never changes while the socket lives,
    so a cached entry is never wrong (a dead socket's post just answers 410). Bounded, least recent out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.by_socket: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.by_cid: OrderedDict[str, tuple[AppId, SocketId]] = OrderedDict()

    def remember(self, app_id: str, socket_id: str, connection_id: str | None) -> None:
        if connection_id is None:
            return
        self.by_socket[(app_id, socket_id)] = connection_id
        self.by_socket.move_to_end((app_id, socket_id))
        self.by_cid[connection_id] = (AppId(app_id), SocketId(socket_id))
        self.by_cid.move_to_end(connection_id)
        while len(self.by_socket) > self.size:
            self.by_socket.popitem(last=False)
        while len(self.by_cid) > self.size:
            self.by_cid.popitem(last=False)

    def sockets(self, app_id: str, items: Sequence[Item]) -> list[SocketId]:
        """Socket ids of subscriber/user/watcher items, remembering the connectionIds they carry."""
        found: list[SocketId] = []
        for item in items:
            socket_id = text(item, "sid") or ""
            self.remember(app_id, socket_id, text(item, "cid"))
            found.append(SocketId(socket_id))
        return found


class Table:
    def __init__(
        self,
        name: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_workers: int = 16,
        executor: Executor | None = None,
    ) -> None:
        self.name = name
        self._aws = AwsCaller(
            "dynamodb",
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            max_workers=max_workers,
            executor=executor,
            client_config={"retries": {"mode": "standard", "max_attempts": 4}},
        )

    def op(
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
        body: dict[str, Any] = {"TableName": self.name}
        if item is not None:
            body["Item"] = item
        if key is not None:
            body["Key"] = key
        if update is not None:
            body["UpdateExpression"] = update
        if condition is not None:
            body["ConditionExpression"] = condition
            body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        names = {f"#{n}": n for n in PLACEHOLDER.findall(f"{update or ''} {condition or ''}")}
        if names:
            body["ExpressionAttributeNames"] = names
        if values:
            body["ExpressionAttributeValues"] = values
        return {kind: body}

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """A plain call; AWS failures become ``StoreUnavailable`` (conditional failures too: catch them first)."""
        try:
            return await self._aws.call(operation, TableName=self.name, **kwargs)
        except AWS_ERRORS as exc:
            raise unavailable(exc, f"DynamoDB {operation}") from exc

    async def conditional(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write: ``None`` when the condition did not hold (a decision, not an error)."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await self._aws.call(operation, TableName=self.name, **kwargs)
            except AWS_ERRORS as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return None
                if code != "TransactionConflictException" or attempt == MAX_ATTEMPTS - 1:
                    raise unavailable(exc, f"DynamoDB {operation}") from exc
            await pause(attempt)
        raise AssertionError("unreachable")

    async def transact(self, items: list[dict[str, Any]]) -> list[tuple[str, Item | None]] | None:
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
            await pause(attempt)
        raise StoreUnavailable("DynamoDB TransactWriteItems: items stayed busy after retries (hot channel?)")

    async def get(self, key: Item, projection: str | None = None) -> Item | None:
        kwargs: dict[str, Any] = {"Key": key, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
            kwargs["ExpressionAttributeNames"] = {f"#{n}": n for n in PLACEHOLDER.findall(projection)}
        item: Item | None = (await self.call("get_item", **kwargs)).get("Item")
        return item

    async def query(
        self, pk: str, prefix: str = "", projection: str | None = None, *, consistent: bool = True
    ) -> list[Item]:
        """Every item of a partition (optionally under a sort-key prefix), following ``LastEvaluatedKey``.
        ``consistent=False``: half the read units, for readers that tolerate missing a very recent write."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#pk = :pk" + (" AND begins_with(#sk, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": s(pk), **({":prefix": s(prefix)} if prefix else {})},
            "ConsistentRead": consistent,
        }
        names = "#pk #sk" if prefix else "#pk"
        if projection:
            kwargs["ProjectionExpression"] = projection
            names += " " + projection
        kwargs["ExpressionAttributeNames"] = {f"#{n}": n for n in PLACEHOLDER.findall(names)}
        items: list[Item] = []
        while True:
            page = await self.call("query", **kwargs)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last

    async def batch_get(self, keys: Sequence[Item], projection: str | None = None) -> list[Item]:
        """``BatchGetItem`` in chunks of 100, concurrently, retrying ``UnprocessedKeys``."""

        async def chunk(part: Sequence[Item]) -> list[Item]:
            request: dict[str, Any] = {"Keys": list(part), "ConsistentRead": True}
            if projection:
                request["ProjectionExpression"] = projection + ", #pk, #sk"
                request["ExpressionAttributeNames"] = {
                    f"#{n}": n for n in PLACEHOLDER.findall(request["ProjectionExpression"])
                }
            found: list[Item] = []
            for attempt in range(MAX_ATTEMPTS):
                try:
                    page = await self._aws.call("batch_get_item", RequestItems={self.name: request})
                except AWS_ERRORS as exc:
                    raise unavailable(exc, "DynamoDB BatchGetItem") from exc
                found.extend(page.get("Responses", {}).get(self.name, []))
                left = page.get("UnprocessedKeys", {}).get(self.name)
                if not left:
                    return found
                request = left
                await pause(attempt)
            raise StoreUnavailable("DynamoDB BatchGetItem: keys left unprocessed after retries")

        parts = [keys[i : i + 100] for i in range(0, len(keys), 100)]
        results = await asyncio.gather(*(chunk(part) for part in parts))
        return [item for part in results for item in part]

    async def batch_write(self, puts: Sequence[Item] = (), deletes: Sequence[Item] = ()) -> None:
        """Idempotent puts/deletes (watchers, sweep entries) with ``BatchWriteItem`` in chunks of 25."""
        requests = [{"PutRequest": {"Item": item}} for item in puts] + [
            {"DeleteRequest": {"Key": key}} for key in deletes
        ]

        async def chunk(part: list[dict[str, Any]]) -> None:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    page = await self._aws.call("batch_write_item", RequestItems={self.name: part})
                except AWS_ERRORS as exc:
                    raise unavailable(exc, "DynamoDB BatchWriteItem") from exc
                part = page.get("UnprocessedItems", {}).get(self.name) or []
                if not part:
                    return
                await pause(attempt)
            raise StoreUnavailable("DynamoDB BatchWriteItem: items left unprocessed after retries")

        await asyncio.gather(*(chunk(requests[i : i + 25]) for i in range(0, len(requests), 25)))

    async def close(self) -> None:
        await self._aws.close()
