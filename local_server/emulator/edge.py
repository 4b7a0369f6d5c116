"""CloudFront in front of both APIs, as ``cdk/cloudfront/rewrite.js`` routes: ``/app/{key}`` to the
WebSocket API's stage root with ``?app_key={key}``, ``/apps/*`` unchanged to the HTTP API, anything else 404."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from local_server.emulator.http_api import MAX_PAYLOAD_BYTES, HttpApi
from local_server.emulator.websocket import WebSocketApi


class Edge:
    def __init__(self, websocket: WebSocketApi, http: HttpApi) -> None:
        self.websocket = websocket
        self.http = http

    async def stage_root(self, request: web.Request) -> web.StreamResponse:
        """``/app/{key}`` (pusher-js, rewritten as the CloudFront Function does) or the stage root ``/``."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"ok": True, "server": "sockless", "mode": "emulate-lambda"})
        query = list(request.query.items())
        key = request.match_info.get("key")
        if key is not None:
            # The CloudFront Function: /app/{key}?protocol=7... -> /{stage}?app_key={key}&protocol=7...
            query = [("app_key", key), *query]
        return await self.websocket.connect(request, query)

    def app(self, extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
        """``extra_routes`` adds the emulator's own pages (the debug console) ahead of the 404 catch-all."""
        app = web.Application(client_max_size=MAX_PAYLOAD_BYTES)
        app.router.add_get("/app/{key}", self.stage_root)
        app.router.add_get("/", self.stage_root)
        app.router.add_route("*", "/apps/{tail:.*}", self.http.handle)
        if extra_routes is not None:
            extra_routes(app)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        return app


async def _not_found(request: web.Request) -> web.Response:
    # What the deployed CloudFront Function (cdk/cloudfront/rewrite.js) answers for any path that is
    # neither /app/{key} (WebSocket API) nor /apps/... (HTTP API).
    return web.Response(status=404, text="sockless: WebSocket clients connect to /app/{key}\n")
