"""Liveness of connections in the DynamoDB store, for the sweep that catches a ``$disconnect`` never sent.

Each connection item carries ``seen`` (its last sign of life), ``sb`` (the time bucket its sweep entry is
filed under) and ``ttl`` (physical expiry, long after API Gateway's 2 h cap, only to collect what cleanup
missed). Sweep entries (``sweep#<bucket>`` partitions) let :meth:`Sweep.stale` read only the buckets that
became due since its cursor, instead of scanning the table. :meth:`Sweep.touch` is one small write; the
entry is moved lazily, when the sweep finds the connection seen later than its bucket (docs/dynamodb.md
"Sweep").
"""

from __future__ import annotations

from collections.abc import Callable

from shared.dynamodb.items import Item, key, n, num, s, text
from shared.store.base import Connection
from shared.store.dynamodb_table import (
    CONN_SK,
    Table,
    conn_pk,
    connection_from,
    sweep_key,
)
from shared.types import AppId, SocketId

# DynamoDB deletes expired items lazily (often within hours, up to days); physical ``ttl`` only collects
# what cleanup missed, so it runs this long after the connection could have lived.
TTL_GRACE_SECONDS = 24 * 3600
CURSOR = key("sweep", "cursor")


class Sweep:
    def __init__(
        self, table: Table, clock: Callable[[], float], *, bucket_seconds: int, max_connection_seconds: float
    ) -> None:
        self.table = table
        self.clock = clock
        self.bucket_seconds = bucket_seconds
        self.max_connection_seconds = max_connection_seconds

    def bucket(self, at: float) -> int:
        return int(at // self.bucket_seconds)

    def ttl(self, now: float) -> dict[str, str]:
        return n(int(now + self.max_connection_seconds + TTL_GRACE_SECONDS))

    def liveness(self, seen: float) -> Item:
        """The liveness attributes of a new connection item."""
        return {"seen": n(seen), "sb": n(self.bucket(seen)), "ttl": self.ttl(seen)}

    def entry(self, app_id: str, socket_id: str, bucket: int) -> Item:
        return {**sweep_key(bucket, app_id, socket_id), "app": s(app_id), "sid": s(socket_id)}

    async def touch(self, app_id: AppId, socket_id: SocketId) -> bool:
        now = self.clock()
        done = await self.table.conditional(
            "update_item",
            Key=key(conn_pk(app_id, socket_id), CONN_SK),
            UpdateExpression="SET #seen = :now, #ttl = :ttl",
            ConditionExpression="attribute_exists(#pk) AND attribute_not_exists(#closing)",
            ExpressionAttributeNames={"#seen": "seen", "#ttl": "ttl", "#pk": "pk", "#closing": "closing"},
            ExpressionAttributeValues={":now": n(now), ":ttl": self.ttl(now)},
        )
        return done is not None

    async def stale(self, silent_for: float, limit: int) -> list[Connection]:
        """Connections not seen for ``silent_for`` seconds, oldest buckets first, at most ``limit``.

        A bucket is done (the cursor moves past it) once it holds no entry: every connection in it was
        removed, touched (its entry moved on) or was already gone (its entry is dropped here).
        """
        table = self.table
        now = self.clock()
        last = self.bucket(now - silent_for) - 1  # the newest bucket entirely older than the threshold
        cursor = await table.get(CURSOR)
        lookback = int(self.max_connection_seconds // self.bucket_seconds) + 2
        start = int(num(cursor, "b")) + 1 if cursor is not None else last - lookback
        done_until = start - 1
        blocked = False
        found: list[Connection] = []
        for bucket in range(start, min(last, start + 4 * lookback) + 1):
            entries = await table.query(f"sweep#{bucket}")
            if entries:
                keys = [key(conn_pk(text(e, "app") or "", text(e, "sid") or ""), CONN_SK) for e in entries]
                items = {text(i, "pk"): i for i in await table.batch_get(keys)}
                garbage: list[Item] = []
                for entry, conn_key in zip(entries, keys, strict=True):
                    item = items.get(conn_key["pk"]["S"])
                    if item is None or int(num(item, "sb")) != bucket:
                        garbage.append(key(f"sweep#{bucket}", text(entry, "sk") or ""))
                    elif self.bucket(float(num(item, "seen"))) > bucket:
                        await self._refile(item, bucket)
                    else:
                        blocked = True
                        if len(found) < limit:
                            found.append(connection_from(item))
                await table.batch_write(deletes=garbage)
            if not blocked:
                done_until = bucket
            if len(found) >= limit:
                break
        if done_until >= start:
            await table.conditional(
                "update_item",
                Key=CURSOR,
                UpdateExpression="SET #b = :b",
                ConditionExpression="attribute_not_exists(#b) OR #b < :b",
                ExpressionAttributeNames={"#b": "b"},
                ExpressionAttributeValues={":b": n(done_until)},
            )
        return found

    async def _refile(self, item: Item, bucket: int) -> None:
        """Move a touched connection's sweep entry to the bucket of its last sign of life."""
        table = self.table
        app_id, socket_id = text(item, "app") or "", text(item, "sid") or ""
        new = self.bucket(float(num(item, "seen")))
        items = [
            table.op("Put", item=self.entry(app_id, socket_id, new)),
            table.op("Delete", key=sweep_key(bucket, app_id, socket_id)),
            table.op(
                "Update",
                key=key(conn_pk(app_id, socket_id), CONN_SK),
                update="SET #sb = :new",
                condition="attribute_exists(#pk) AND #sb = :old",
                values={":new": n(new), ":old": n(bucket)},
            ),
        ]
        if await table.transact(items) is not None:  # gone or moved by another sweep: this entry is garbage
            await table.batch_write(deletes=[sweep_key(bucket, app_id, socket_id)])
