"""The sweep of connections whose ``$disconnect`` never came, run by an EventBridge schedule (every minute).

``$disconnect`` is best effort: when it never comes, the connection would stay in the store with its
subscriptions and presence entries — a ghost member. Every connection has an entry in the store's sweep
index, written once at connect; each run reads the entries that came due (every connection once per
``aws.stale_after_seconds``, 300 s) and asks API Gateway about each (``GetConnection``):

- 410 Gone, or older than ``aws.max_connection_seconds`` (API Gateway closes every connection after 2 h):
  removed exactly like a ``$disconnect`` (member_removed to the channel, vacated/member_removed webhooks);
  an entry whose connection was never recorded (a connect that died half-way) is dropped;
- still open: nothing is written. A live connection costs one GetConnection per cycle and a share of a
  Query, never a DynamoDB write (docs/cost.md#what-was-cut-with-beforeafter).

A 410 on any post (a broadcast, a welcome) already cleans up at once; the sweep bounds how long a ghost
can live when nothing is posted to it: ``stale_after_seconds`` plus one schedule period
(docs/aws.md#the-sweep-stale-connections).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from functions.runtime import Container, container, entry
from shared.store.base import Connection

log = logging.getLogger("sockless.sweep")

# GetConnection calls in flight at once (the management client's pool is sized for the sender's 32).
CONCURRENCY = 32


async def _settle(current: Container, connection: Connection, now: float, gate: asyncio.Semaphore) -> bool:
    """Remove the connection if API Gateway no longer has it. ``True``: it was gone."""
    settings = current.settings.aws
    async with gate:
        expired = now - connection.connected_at > settings.max_connection_seconds
        if not expired and connection.connection_id is not None and await current.is_open(connection.connection_id):
            return False
        await current.connections.close_socket(connection.app_id, connection.socket_id)
        store: Any = current.connections.services.store
        if await store.get_connection(connection.app_id, connection.socket_id) is None:
            # Removed now, or never recorded: the removal deleted the entry, or nobody will.
            await current.connections.sweep_index.forget_entry(connection)
        return True


async def sweep(current: Container) -> dict[str, int]:
    due = await current.connections.sweep_index.due_connections()
    now = time.time()
    gate = asyncio.Semaphore(CONCURRENCY)
    removed = sum(await asyncio.gather(*(_settle(current, c, now, gate) for c in due)))
    if removed:
        log.warning("sweep: %d of %d connection(s) were gone without $disconnect; removed", removed, len(due))
    return {"checked": len(due), "removed": removed}


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    current = container()
    return current.run(sweep(current))
