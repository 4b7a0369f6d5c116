"""The Event Creator's request: a REST ``POST /apps/{id}/events`` signed server-side with the app's secret.

The console hands this request to the same REST handler an SDK's request reaches, so what it publishes
goes through every check and limit a real publish does; the browser never sees the secret.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from shared.auth.signatures import sign_request
from shared.http_api.base import HttpRequest
from shared.settings import AppConfig


def signed_request(
    app: AppConfig, method: str, path: str, body: bytes, *, ip: str = "", now: float | None = None
) -> HttpRequest:
    """``path`` is the ``/apps/...`` path; the query carries the auth parameters.

    They are described in docs/sources.md#rest-api-and-request-signing.
    """
    query = {
        "auth_key": app.key,
        "auth_timestamp": str(int(time.time() if now is None else now)),
        "auth_version": "1.0",
    }
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()
    query["auth_signature"] = sign_request(app.secret, method, path, query)
    headers = {"Content-Type": "application/json"} if body else {}
    return HttpRequest(method=method, path=path, query=query, body=body, ip=ip, headers=headers)


def trigger_request(
    app: AppConfig,
    *,
    channels: Sequence[str],
    name: str,
    data: str,
    socket_id: str | None = None,
    ip: str = "",
    now: float | None = None,
) -> HttpRequest:
    payload: dict[str, object] = {"name": name, "channels": list(channels), "data": data}
    if socket_id:
        payload["socket_id"] = socket_id
    body = json.dumps(payload, separators=(",", ":")).encode()
    return signed_request(app, "POST", f"/apps/{app.id}/events", body, ip=ip, now=now)
