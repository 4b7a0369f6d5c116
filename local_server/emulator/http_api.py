"""API Gateway's HTTP API, emulated from the template: each request becomes a payload-2.0 event for the
route's Lambda integration (the stack has one ``$default`` route), and the result the HTTP response."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from cost.meter import Meter
from local_server.emulator import events
from local_server.emulator.lambdas import FunctionError, LambdaService
from local_server.emulator.template import Api

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API payload quota


class HttpApi:
    def __init__(self, lambdas: LambdaService, api: Api, meter: Meter) -> None:
        self.lambdas = lambdas
        self.api = api
        self.api_id = api.id
        self.stage = api.stage
        self.meter = meter
        integration = api.routes.get("$default")
        self.function = integration.function if integration is not None else None

    def unsupported(self) -> list[str]:
        notes = [f"HTTP API route {key} is not served (only $default)" for key in self.api.routes if key != "$default"]
        if self.function is None:
            notes.append("HTTP API: no Lambda integration on $default; REST calls answer 404")
        return notes

    def event(self, request: web.Request, body: bytes) -> dict[str, Any]:
        return events.http_v2(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            raw_query=request.rel_url.raw_query_string,
            headers=list(request.headers.items()),
            body=body,
            source_ip=request.remote or "127.0.0.1",
            api_id=self.api_id,
            stage=self.stage,
            domain_name=request.host,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.meter.http_request(len(body) + len(request.rel_url.raw_path_qs))
        if self.function is None:
            return web.json_response({"message": "Not Found"}, status=404)
        try:
            result = await self.lambdas.invoke(self.function, self.event(request, body))
        except FunctionError:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        return http_response(result)


def http_response(result: Any) -> web.Response:
    """Map a payload-v2 Lambda result to the HTTP response, as HTTP API does (a dict without ``statusCode``
    is a 200 JSON body)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return web.json_response(result)
    headers: dict[str, str] = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(key)] = ",".join(str(v) for v in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    response = web.Response(status=int(result["statusCode"]), body=body, headers=headers)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", str(cookie))
    return response
