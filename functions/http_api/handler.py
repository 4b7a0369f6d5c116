"""The REST API Lambda: Powertools' ``APIGatewayHttpResolver`` in front of the shared ``RestApi``, unchanged.

Every route goes to ``RestApi`` (it answers 404/405 itself, with Pusher's error shape). The signature is
checked against the ``/apps/...`` path the SDK signed: whatever precedes it (a named stage, a CloudFront
origin path or proxy prefix) is not part of what was signed, so it is cut here.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.client_ip import client_ip
from functions.runtime import container, entry
from shared.http_api.base import HttpRequest

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_BEFORE_APPS = re.compile(r"^.*?(?=/apps/)")

app = APIGatewayHttpResolver(strip_prefixes=[_BEFORE_APPS])


def signed_path(raw_path: str) -> str:
    """``/prod/apps/1/events`` and ``/api/apps/1/events`` -> ``/apps/1/events`` (percent-decoded, as the
    local server sees it)."""
    path = unquote(raw_path)
    index = path.find("/apps/")
    return path[index:] if index > 0 else path


def _request(event: dict[str, Any]) -> HttpRequest:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    http = event["requestContext"]["http"]
    return HttpRequest(
        method=http["method"],
        path=signed_path(event.get("rawPath") or http["path"]),
        # The raw query, not queryStringParameters: API Gateway joins repeated keys with commas there.
        query=dict(parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True)),
        body=raw,
        ip=client_ip(event.get("headers"), http.get("sourceIp", "")),
        headers=event.get("headers") or {},
    )


@app.route(".+", method=METHODS)
def rest() -> Response[str]:
    current = container()
    response = current.run(current.services.rest.handle(_request(app.current_event.raw_event)))
    return Response(
        status_code=response.status,
        content_type="application/json",
        body=json.dumps(response.body, separators=(",", ":")),
        headers=dict(response.headers),
    )


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.resolve(event, context)
    return result
