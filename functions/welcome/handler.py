"""``welcome``: post the connection's first frame once API Gateway has finished the upgrade.

``$connect`` (functions/connect) cannot post during the upgrade, so it invokes this function
asynchronously with either an established socket or a refusal; a refusal's ``pusher:error`` is followed by
DeleteConnection (docs/sources.md#behaviour).
"""

from __future__ import annotations

import logging
import random
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
# Throttling (429 LimitExceededException: the account's management API rate) says nothing about the
# connection: it is retried with full-jitter exponential backoff on a budget of its own
# (``welcome_throttle_seconds``), not the 410 window's; these bound one backoff step.
THROTTLE_BASE_SECONDS = 0.05
THROTTLE_CAP_SECONDS = 1.0


class WelcomeThrottled(RuntimeError):
    """The management API kept throttling the first frame for the whole throttle budget: the invocation fails,
    so Lambda counts an error and the event goes to the AsyncFailures queue (an alarm), not silently away."""


def _throttled(client: Any, exc: Exception) -> bool:
    if isinstance(exc, client.exceptions.LimitExceededException):
        return True
    response = getattr(exc, "response", None) or {}
    return bool(response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 429)


def post_until_open(current: Container, connection_id: str, frame: bytes) -> bool:
    """Post ``frame``; on GoneException (the upgrade is still completing) retry after 10 ms, doubling up to
    ``welcome_retry_interval_ms``, for up to ``welcome_retry_seconds``: ``False`` if the connection never
    opened. Throttling is retried with full-jitter backoff for up to ``welcome_throttle_seconds`` (raises
    ``WelcomeThrottled`` past that): in a connect storm an open connection must not be taken for a gone one.

    The first 410 retries are short because the race is short: the welcome usually loses it by a few
    milliseconds (bench/welcome_latency.py), and every millisecond here is one pusher-js waits.
    """
    settings = current.settings.aws
    interval = settings.welcome_retry_interval_ms / 1000
    started = time.monotonic()
    gone_deadline = started + settings.welcome_retry_seconds
    throttle_deadline = started + settings.welcome_throttle_seconds
    client = current.management()
    wait = min(FIRST_RETRY_SECONDS, interval)
    throttles = 0
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=frame)
            return True
        except client.exceptions.GoneException:
            if time.monotonic() + wait > gone_deadline:
                return False
            time.sleep(wait)
            wait = min(wait * 2, interval)
        except Exception as exc:
            if not _throttled(client, exc):
                raise
            delay = random.uniform(0, min(THROTTLE_CAP_SECONDS, THROTTLE_BASE_SECONDS * 2**throttles))
            throttles += 1
            if time.monotonic() + delay > throttle_deadline:
                raise WelcomeThrottled(
                    f"{connection_id}: throttled {throttles} times in {time.monotonic() - started:.1f} s"
                ) from exc
            time.sleep(delay)
