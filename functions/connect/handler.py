"""``$connect``: check the app, record the connection, and hand the first frame to ``welcome``.

API Gateway cannot post to a connection during ``$connect`` (the upgrade completes only after it
returns), yet pusher-js waits for ``pusher:connection_established`` before anything else. So ``$connect``
checks the app and records the connection, accepts, and invokes ``welcome`` asynchronously; ``welcome``
posts the first frame, retrying GoneException every ~50 ms while the upgrade finishes (docs/sources.md#behaviour).

A refused connection (unknown key 4001, disabled app 4003, over quota 4004, bad protocol 4006/4007/4008,
origin 4009, too many from one address 4100) is accepted too: rejecting the upgrade would only make
pusher-js retry forever, while a ``pusher:error`` as the first frame makes it stop. ``welcome`` sends the
error and then deletes the connection (which closes with 1000: API Gateway has no custom close codes).
Each refusal is reported like the local server's (shared/refusals.py): a rate-limited ``refused
kind=websocket`` line and the EMF metric ``refused_websocket_<code>`` of the app (``-`` for an unknown key).

``$disconnect`` is functions/disconnect, ``welcome`` functions/welcome: one folder per deployed function.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from functions.client_ip import client_ip
from functions.runtime import ConfigurationError, Container, container, entry
from shared.errors import PusherError
from shared.refusals import report as report_refusal
from shared.types import AppId, SocketId

log = logging.getLogger("sockless.connect")

OK = {"statusCode": 200}
APP_PATH = re.compile(r"/app/(?P<key>[^/?]+)")


def app_key(event: Mapping[str, Any]) -> str | None:
    """The key from ``app_key`` (what the CloudFront Function makes of ``/app/{key}?...``), else from an
    ``/app/{key}`` path when the event carries one (a custom-domain mapping or a direct test call)."""
    query = event.get("queryStringParameters") or {}
    if query.get("app_key"):
        return str(query["app_key"])
    context = event.get("requestContext") or {}
    for path in (event.get("path"), event.get("rawPath"), context.get("path"), context.get("resourcePath")):
        if isinstance(path, str) and (m := APP_PATH.search(path)):
            return m["key"]
    return None


def _header(event: Mapping[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


async def _accept(current: Container, event: Mapping[str, Any]) -> dict[str, Any]:
    """Check and record the connection; the welcome payload (an established socket or a refusal)."""
    context = event["requestContext"]
    connection_id = context["connectionId"]
    services = current.services
    engine = services.engine
    ip = client_ip(event.get("headers"), (context.get("identity") or {}).get("sourceIp", ""))
    key = app_key(event) or ""
    try:
        query = event.get("queryStringParameters") or {}
        app = await engine.authorize_connection(key, query.get("protocol"), _header(event, "origin"), ip)
        connection = await current.connections.open(app, connection_id)
    except PusherError as exc:
        known = await services.apps.by_key(key) if key else None  # never the key itself: clients make them up
        report_refusal(
            engine.metrics,
            kind="websocket",
            app_id=known.id if known is not None else None,
            code=exc.code,
            reason=exc.message,
            client=ip,
        )
        return {"connection_id": connection_id, "error": {"code": exc.code, "message": exc.message}}
    return {"connection_id": connection_id, "app_id": app.id, "socket_id": connection.socket_id}


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = container(event)
    welcome_function = current.settings.aws.welcome_function
    if not welcome_function:
        raise ConfigurationError("SOCKLESS_AWS__WELCOME_FUNCTION is not set: $connect cannot greet the client")
    payload = current.run(_accept(current, event))
    try:
        current.invoke_event(welcome_function, payload, "welcome")
    except Exception:
        # The upgrade is refused when $connect fails, and no $disconnect follows: forget the connection now.
        if "socket_id" in payload:
            app_id, socket_id = AppId(str(payload["app_id"])), SocketId(str(payload["socket_id"]))
            current.run(current.connections.close_socket(app_id, socket_id))
        raise
    return OK
