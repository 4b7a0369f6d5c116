"""The stale-connection sweep, run by an EventBridge schedule (every minute).

``$disconnect`` is best effort: when it never comes, the connection would stay in the store with its
subscriptions and presence entries — a ghost member. The sweep finds connections the store has not seen
activity from for ``aws.stale_after_seconds`` and asks API Gateway about each (``GetConnection``):

- 410 Gone, or older than ``aws.max_connection_seconds`` (API Gateway closes every connection after 2 h):
  removed exactly like a ``$disconnect`` (member_removed to the channel, vacated/member_removed webhooks);
- still open: marked seen, so it is asked again only after another ``stale_after_seconds``.

A 410 on any post (a broadcast, a welcome) already cleans up at once; the sweep bounds how long a ghost
can live when nothing is posted to it: ``stale_after_seconds`` plus one schedule period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from functions.runtime import Container, container, entry
from shared.store.base import Connection

log = logging.getLogger("sockless.sweep")


BATCH = 100
MAX_BATCHES = 50  # 5,000 connections per run; the next run (a minute later) continues


async def _settle(current: Container, connection: Connection, now: float) -> bool:
    """Remove the connection if API Gateway no longer has it; else mark it seen. ``True``: removed."""
    settings = current.settings.aws
    expired = now - connection.connected_at > settings.max_connection_seconds
    if expired or connection.connection_id is None or not await current.is_open(connection.connection_id):
        await current.connections.close_socket(connection.app_id, connection.socket_id)
        return True
    await current.connections.map.touch(connection.app_id, connection.socket_id)
    return False


async def sweep(current: Container) -> dict[str, int]:
    store = current.connections.map
    checked = removed = 0
    for _ in range(MAX_BATCHES):
        stale = await store.stale_connections(current.settings.aws.stale_after_seconds, BATCH)
        now = time.time()
        results = await asyncio.gather(*(_settle(current, c, now) for c in stale))
        checked += len(stale)
        removed += sum(results)
        if len(stale) < BATCH:
            break
    if checked:
        log.info("sweep: %d silent connection(s) checked, %d removed", checked, removed)
    return {"checked": checked, "removed": removed}


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    current = container()
    return current.run(sweep(current))
