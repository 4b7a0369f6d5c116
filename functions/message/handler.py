"""``$default``: every client frame goes through ``engine.handle`` (``fanout`` is functions/fanout).

A frame from a connection the store does not know (already removed by ``$disconnect``, the sweep or a
410 cleanup) is ignored: the client is gone or about to be, and posting to it would only cost a 410.

``pusher:ping`` takes the lightest path (docs/aws.md#default): idle pusher-js clients send one every
``activity_timeout``, and the answer needs nothing but the connectionId the event carries, so the pong is
posted straight back without building the services or reading the store.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from functions.runtime import Container, container, entry
from shared.protocol.frames import PONG

log = logging.getLogger("sockless.message")

OK = {"statusCode": 200}


async def _handle(current: Container, event: dict[str, Any]) -> None:
    found = await current.connections.lookup(event["requestContext"]["connectionId"])
    if found is None:
        return
    app, socket_id = found
    engine = current.services.engine
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        await engine.handle_binary(app, socket_id)
        return
    await engine.handle(app, socket_id, body)


def is_ping(event: dict[str, Any]) -> bool:
    body = event.get("body")
    if event.get("isBase64Encoded") or not isinstance(body, str) or "pusher:ping" not in body:
        return False
    try:
        frame = json.loads(body)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("event") == "pusher:ping"


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A frame straight from API Gateway (a ``$default`` event), or a batch of frames from the ordered
    frames queue (an SQS event: ``functions/message/frames.py``)."""
    if "Records" in event:
        from functions.message.frames import batch_response

        return batch_response(container(), event)
    current = container(event)
    if is_ping(event):
        current.management_call("post_to_connection", ConnectionId=event["requestContext"]["connectionId"], Data=PONG)
        return OK
    current.run(_handle(current, event))
    return OK
