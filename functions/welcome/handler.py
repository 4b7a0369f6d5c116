"""``welcome``: post the connection's first frame once API Gateway has finished the upgrade.

``$connect`` (functions/connect) cannot post during the upgrade, so it invokes this function
asynchronously with either an established socket or a refusal; a refusal's ``pusher:error`` is followed by
DeleteConnection (docs/sources.md#behaviour).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from functions.runtime import Container, container, entry
from shared.protocol import frames
from shared.types import AppId, SocketId

log = logging.getLogger("sockless.welcome")


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Post the first frame as soon as the connection is open; a refusal is followed by DeleteConnection."""
    current = container()
    connection_id = str(event["connection_id"])
    error = event.get("error")
    if error is not None:
        frame = frames.error_frame(str(error.get("message", "")), error.get("code"))
    else:
        frame = current.services.engine.welcome(SocketId(str(event["socket_id"])))
    delivered = post_until_open(current, connection_id, frame)
    if error is not None:
        if delivered:
            current.management_call("delete_connection", ConnectionId=connection_id)
        return {"delivered": delivered}
    if not delivered:
        # The client left before the upgrade finished (or $disconnect raced us): clean up like a disconnect.
        log.info("connection %s never opened; removing it", connection_id)
        current.run(current.connections.close_socket(AppId(str(event["app_id"])), SocketId(str(event["socket_id"]))))
    return {"delivered": delivered}


FIRST_RETRY_SECONDS = 0.01


def post_until_open(current: Container, connection_id: str, frame: bytes) -> bool:
    """Post ``frame``; on GoneException (the upgrade is still completing) retry after 10 ms, doubling up to
    ``welcome_retry_interval_ms``, for up to ``welcome_retry_seconds``; throttling is retried the same way.
    ``False`` if the connection never opened.

    The first retries are short because the race is short: the welcome usually loses it by a few
    milliseconds (bench/welcome_latency.py), and every millisecond here is one pusher-js waits.
    """
    settings = current.settings.aws
    interval = settings.welcome_retry_interval_ms / 1000
    deadline = time.monotonic() + settings.welcome_retry_seconds
    client = current.management()
    wait = min(FIRST_RETRY_SECONDS, interval)
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=frame)
            return True
        except (client.exceptions.GoneException, client.exceptions.LimitExceededException):
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
            wait = min(wait * 2, interval)
