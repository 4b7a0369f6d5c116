"""API Gateway's management API (``@connections``) for the emulated WebSocket API.

Each call is authorized first (``execute-api:ManageConnections`` on the connection's ARN, ``iam.py``),
then, when throttling is injected, may answer 429 ``TooManyRequestsException``: a set share of the calls,
spread evenly (every 1/rate-th call), so a test exercises the senders' retry paths deterministically.
Posts over 128 KB answer 413, posts to a connection that is not open 410 ``GoneException``.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from local_server.emulator.iam import Iam
from local_server.emulator.websocket import MAX_MESSAGE_BYTES, WebSocketApi


def aws_error(status: int, error_type: str, message: str) -> web.Response:
    """The rest-json error shape boto3 maps to a modeled exception (``x-amzn-ErrorType``)."""
    return web.Response(
        status=status,
        text=json.dumps({"message": message}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type},
    )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


class ManagementApi:
    def __init__(self, websocket: WebSocketApi, iam: Iam | None = None, *, throttle_rate: float = 0.0) -> None:
        self.websocket = websocket
        self.iam = iam
        self.throttle_rate = throttle_rate  # share of calls answered 429 (0: none)
        self._throttle_debt = 0.0

    def _refused(self, request: web.Request) -> web.Response | None:
        """IAM's verdict, then the injected throttling: the response that refuses this call, if any."""
        if self.iam is not None:
            needs = self.iam.manage_connections(
                self.websocket.api_id,
                request.match_info.get("stage", self.websocket.stage),
                request.method,
                request.match_info["connection_id"],
            )
            denial = self.iam.check(request.headers.get("Authorization"), needs)
            if denial is not None:
                status, headers, body = self.iam.rest_denial(denial)
                return web.Response(status=status, body=body, headers=headers)
        if self.throttle_rate > 0:
            self._throttle_debt += self.throttle_rate
            if self._throttle_debt >= 1.0:
                self._throttle_debt -= 1.0
                self.websocket.meter.count(throttled=1)
                return aws_error(429, "TooManyRequestsException", "Too Many Requests")
        return None

    async def post_to_connection(self, request: web.Request) -> web.Response:
        data = await request.read()
        meter = self.websocket.meter
        meter.count(posts=1)
        refused = self._refused(request)
        if refused is not None:
            return refused
        socket = self.websocket.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open:
            meter.count(gone=1)
            return aws_error(410, "GoneException", "")
        if len(data) > MAX_MESSAGE_BYTES:
            return aws_error(413, "PayloadTooLargeException", "Message too long")
        if not await self.websocket.send(socket, data):
            meter.count(gone=1)
            return aws_error(410, "GoneException", "")
        return web.Response(status=200)  # metered by send(): a message out

    async def get_connection(self, request: web.Request) -> web.Response:
        self.websocket.meter.count(gets=1)
        refused = self._refused(request)
        if refused is not None:
            return refused
        socket = self.websocket.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open:
            return aws_error(410, "GoneException", "")
        identity = {"sourceIp": socket.conn.source_ip, "userAgent": socket.conn.user_agent or ""}
        return web.json_response(
            {"connectedAt": _iso(socket.connected), "identity": identity, "lastActiveAt": _iso(socket.last_active)}
        )

    async def delete_connection(self, request: web.Request) -> web.Response:
        self.websocket.meter.count(deletes=1)
        refused = self._refused(request)
        if refused is not None:
            return refused
        socket = self.websocket.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open or socket.ws is None:
            return aws_error(410, "GoneException", "")
        self.websocket.delete(socket)
        return web.Response(status=204)

    def add_routes(self, app: web.Application) -> None:
        for prefix in ("", "/{stage}"):
            path = prefix + "/@connections/{connection_id}"
            app.router.add_post(path, self.post_to_connection)
            app.router.add_get(path, self.get_connection)
            app.router.add_delete(path, self.delete_connection)
