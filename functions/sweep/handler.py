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

import logging
import time
from typing import Any

from functions.runtime import Container, container

log = logging.getLogger("sockless.sweep")


async def sweep(current: Container) -> dict[str, int]:
    settings = current.settings.aws
    now = time.time()
    index = current.connections
    checked = removed = 0
    for stale in await index.stale(now - settings.stale_after_seconds):
        checked += 1
        expired = now - stale.connected_at > settings.max_connection_seconds
        if expired or not await current.is_open(stale.connection_id):
            await index.close_socket(stale.app_id, stale.socket_id)
            removed += 1
        else:
            await index.touch(stale.app_id, stale.socket_id, now)
    if removed:
        log.info("sweep removed %d of %d silent connections", removed, checked)
    return {"checked": checked, "removed": removed}


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    current = container()
    return current.run(sweep(current))
