"""The index the sweep reads to find connections whose ``$disconnect`` never came, written once per connection.

Each connection has one **entry** (``sweep#<slot>`` / its connectionId), written by the connect and deleted
by the removal, and never touched in between: a live connection costs no write however long it lives.
The entry doubles as the connectionId -> (app, socket) map that ``$default`` and ``$disconnect`` read,
so a connect writes it instead of a separate ``cid#`` item.

The slot is a hash of the connectionId into :data:`SLOTS` partitions (fewer for cycles under a minute). The
sweep walks the slots round a cycle of ``cycle`` seconds (``aws.stale_after_seconds``): slot ``i`` is due
whenever the clock passes ``(k * SLOTS + i) * cycle / SLOTS`` for some ``k``. A cursor item records how
far the last run got, so each run reads just the slots that came due since (one small Query each,
eventually consistent: an entry written a moment ago is simply checked one cycle later) and every
connection is asked about once per cycle. A ghost (closed without ``$disconnect``) is therefore found
within ``cycle`` + one schedule period, or ``cycle`` + :data:`CONNECT_GRACE_SECONDS` + one period when it
died in its first seconds (docs/dynamodb.md#stale-connections-the-sweep).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from shared.dynamodb.items import Item, key, n, num, s, text
from shared.store.base import Connection
from shared.store.dynamodb_table import Table
from shared.types import AppId, SocketId

# DynamoDB deletes expired items lazily (often within hours, up to days); physical ``ttl`` only collects
# what cleanup missed, so it runs this long after the connection could have lived.
TTL_GRACE_SECONDS = 24 * 3600
# Partitions of the index. 60 keeps each Query small (1 MB holds ~8,000 entries) and a connect storm's
# writes spread over 60 partition keys. A cycle shorter than 60 s (tests) gets one slot per second of it, so
# a run a second reads one slot, not sixty.
SLOTS = 60
# A connect writes its entry before its connection item and runs for at most the function's 10 s timeout:
# younger entries are left for the next cycle, never judged while their connect may still be running.
CONNECT_GRACE_SECONDS = 15
CURSOR = key("sweep", "cursor")


class Sweep:
    def __init__(
        self, table: Table, clock: Callable[[], float], *, max_connection_seconds: float, cycle_seconds: float = 300
    ) -> None:
        self.table = table
        self.clock = clock
        self.max_connection_seconds = max_connection_seconds
        self.cycle = cycle_seconds
        self.slots = max(1, min(SLOTS, int(cycle_seconds)))

    def entry_key(self, app_id: str, socket_id: str, connection_id: str | None) -> Item:
        """The entry's key: by connectionId (what ``$default`` looks up); by socket when there is none
        (stores used outside API Gateway, e.g. the contract tests)."""
        name = connection_id if connection_id is not None else f"sock#{app_id}#{socket_id}"
        return key(f"sweep#{zlib.crc32(name.encode()) % self.slots}", name)

    def ttl(self, now: float) -> dict[str, str]:
        return n(int(now + self.max_connection_seconds + TTL_GRACE_SECONDS))

    def entry(self, connection: Connection) -> Item:
        """The connection's entry: what the sweep needs to ask API Gateway, and the connectionId map."""
        item: Item = {
            **self.entry_key(connection.app_id, connection.socket_id, connection.connection_id),
            "app": s(connection.app_id),
            "sid": s(connection.socket_id),
            "at": n(connection.connected_at),
            "ttl": self.ttl(connection.connected_at),
        }
        if connection.connection_id is not None:
            item["cid"] = s(connection.connection_id)
        return item

    async def lookup(self, connection_id: str) -> tuple[AppId, SocketId] | None:
        item = await self.table.get(self.entry_key("", "", connection_id))
        if item is None:
            return None
        return AppId(text(item, "app") or ""), SocketId(text(item, "sid") or "")

    async def due(self) -> list[Connection]:
        """The connections whose slot came due since the last run (all of them on a first run, or after a
        pause of a whole cycle), except those younger than :data:`CONNECT_GRACE_SECONDS`.

        The caller asks API Gateway about each and removes the gone ones; nothing is written for the live
        ones. An entry whose connection was never recorded (a connect that died half-way) must be dropped
        with :meth:`forget` once its connection is known to be absent.
        """
        now, cycle, slots = self.clock(), self.cycle, self.slots
        cursor = await self.table.get(CURSOR)
        since = float(num(cursor, "t")) if cursor is not None else now - cycle
        first, last = int(max(since, now - cycle) * slots / cycle), int(now * slots / cycle)
        if now - since >= cycle:  # a first run, or one cycle or more since the last: every slot
            first = last - slots
        found: list[Connection] = []
        for tick in range(first + 1, last + 1):
            for entry in await self.table.query(f"sweep#{tick % slots}", consistent=False):
                connected_at = float(num(entry, "at"))
                if connected_at <= now - CONNECT_GRACE_SECONDS:
                    found.append(
                        Connection(
                            app_id=AppId(text(entry, "app") or ""),
                            socket_id=SocketId(text(entry, "sid") or ""),
                            connected_at=connected_at,
                            connection_id=text(entry, "cid"),
                        )
                    )
        if last > first:
            await self.table.conditional(
                "update_item",
                Key=CURSOR,
                UpdateExpression="SET #t = :now",
                ConditionExpression="attribute_not_exists(#t) OR #t < :now",
                ExpressionAttributeNames={"#t": "t"},
                ExpressionAttributeValues={":now": n(now)},
            )
        return found

    async def forget(self, connection: Connection) -> None:
        """Drop the entry of a connection that is not (or no longer) recorded."""
        await self.table.batch_write(
            deletes=[self.entry_key(connection.app_id, connection.socket_id, connection.connection_id)]
        )
