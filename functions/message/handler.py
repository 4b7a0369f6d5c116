"""``$default``: every client frame goes through ``engine.handle``; ``fanout``: one chunk of a large broadcast.

A frame from a connection the store does not know (already removed by ``$disconnect``, the sweep or a
410 cleanup) is ignored: the client is gone or about to be, and posting to it would only cost a 410.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from functions.runtime import Container, container
from shared.errors import FrameError
from shared.types import AppId, SocketId

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
        await engine.refuse(app, socket_id, FrameError("Binary frames are not supported"))
        return
    await engine.handle(app, socket_id, body)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = container(event)
    current.run(_handle(current, event))
    return OK


async def _fanout(current: Container, event: dict[str, Any]) -> dict[str, Any]:
    services = current.services
    app = await services.apps.by_id(str(event["app_id"]))
    if app is None:
        return {"sent": 0}
    sockets = [SocketId(s) for s in event["socket_ids"]]
    frame = base64.b64decode(event["frame"]) if event.get("frame_b64") else str(event["frame"]).encode()
    except_socket = SocketId(event["except_socket"]) if event.get("except_socket") else None
    sent = await services.engine.broadcast(app, sockets, frame, except_socket)
    return {"sent": sent, "app_id": AppId(app.id)}


def fanout(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Invoked asynchronously by a sender whose broadcast was too large for one invocation to post in time:
    posts this chunk, and cleans up the sockets that answered 410, like any broadcast."""
    current = container()
    return current.run(_fanout(current, event))
