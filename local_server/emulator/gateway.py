"""API Gateway, emulated: the WebSocket API (behind the CloudFront path rewrite), its management API, and
the HTTP API, each turning traffic into the events the ``functions/*`` handlers receive on AWS.

Behaviour copied from AWS because the handlers depend on it (docs/sources.md#behaviour):
- the upgrade completes only after ``$connect`` returned 2xx; until then, and after close, a post to the
  connection answers 410 ``GoneException`` (the welcome function retries through that window);
- every client frame is a separate ``$default`` invocation, run concurrently (no per-connection ordering);
- ``DeleteConnection`` closes with 1000 and ``$disconnect`` follows; a failed ``$default`` invocation sends
  ``{"message": "Internal server error", ...}`` to the client;
- posts over 128 KB answer 413, client messages over 128 KB close the socket with 1009;
- a connection idle for 10 minutes, or open for 2 hours, is closed with 1001 (both configurable).

One thing AWS does and a client cannot cause: losing a ``$disconnect``. A client that closes with code
``LOSE_DISCONNECT`` (4999) gets its socket closed with no ``$disconnect`` event, so tests can prove the 410
cleanup and the sweep remove such connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from local_server.emulator import events
from local_server.emulator.lambdas import FunctionError, LambdaService

log = logging.getLogger("sockless.emulator")

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway WebSocket message payload quota
MAX_EVENT_PAYLOAD = 256 * 1024  # Lambda asynchronous invocation payload
LOSE_DISCONNECT = 4999  # a client closing with this code plays "API Gateway never sent $disconnect"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _aws_error(status: int, error_type: str, message: str) -> web.Response:
    """The rest-json error shape boto3 maps to a modeled exception (``x-amzn-ErrorType``)."""
    return web.Response(
        status=status,
        text=json.dumps({"message": message}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type},
    )


@dataclass
class Socket:
    """One client WebSocket as API Gateway tracks it."""

    conn: events.WsConnection
    ws: web.WebSocketResponse | None = None  # set once $connect accepted and the upgrade completed
    open: bool = False
    last_active: float = field(default_factory=time.time)
    connected: float = field(default_factory=time.time)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    deleted: bool = False  # closed through DeleteConnection
    disconnected: bool = False  # $disconnect sent


@dataclass
class Meter:
    """What API Gateway bills (and throttles): messages both ways in 32 KB units, connection time,
    management API calls (docs/aws.md "Measurements", bench/handler_cost.py)."""

    connects: int = 0
    messages_in: int = 0  # client frames, in 32 KB units
    messages_out: int = 0  # posts delivered, in 32 KB units
    posts: int = 0  # PostToConnection calls, delivered or not
    gone: int = 0  # posts answered 410
    gets: int = 0
    deletes: int = 0
    http_requests: int = 0  # HTTP API requests (REST)
    closed_connection_seconds: float = 0.0

    @staticmethod
    def units(size: int) -> int:
        return max(1, -(-size // (32 * 1024)))


@dataclass(frozen=True)
class Functions:
    connect: str
    disconnect: str
    message: str
    http_api: str


class Gateway:
    def __init__(
        self,
        lambdas: LambdaService,
        functions: Functions,
        *,
        api_id: str = "emulated",
        stage: str = "prod",
        http_stage: str = "$default",
        idle_timeout: float = 600.0,
        max_connection_seconds: float = 7200.0,
    ) -> None:
        self.lambdas = lambdas
        self.functions = functions
        self.api_id = api_id
        self.stage = stage
        self.http_stage = http_stage
        self.idle_timeout = idle_timeout  # API Gateway: 10 minutes without a message either way
        self.max_connection_seconds = max_connection_seconds  # API Gateway: 2 hours, whatever the traffic
        self.sockets: dict[str, Socket] = {}
        self.meter = Meter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- helpers ---------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return await self.lambdas.invoke(function, event)

    # -- the public front (CloudFront + WebSocket API + HTTP API) ----------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``/app/{key}`` (pusher-js, rewritten as the CloudFront Function does) or the stage root ``/``."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"ok": True, "server": "sockless", "mode": "emulate-lambda"})
        if self.closing:
            return web.Response(status=503)
        query = list(request.query.items())
        key = request.match_info.get("key")
        if key is not None:
            # The CloudFront Function: /app/{key}?protocol=7... -> /{stage}?app_key={key}&protocol=7...
            query = [("app_key", key), *query]
        conn = events.WsConnection(
            connection_id=events.connection_id(),
            api_id=self.api_id,
            stage=self.stage,
            domain_name=request.host,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent"),
        )
        socket = self.sockets[conn.connection_id] = Socket(conn)
        event = events.ws_connect(conn, list(request.headers.items()), query)
        try:
            result = await self._invoke(self.functions.connect, event)
        except FunctionError:
            self.sockets.pop(conn.connection_id, None)
            return web.json_response({"message": "Internal server error"}, status=500)
        status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if not 200 <= status < 300:
            self.sockets.pop(conn.connection_id, None)
            return web.Response(status=status)

        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=MAX_MESSAGE_BYTES)
        try:
            await ws.prepare(request)
        except BaseException:
            self._spawn(self._closed(socket, 1006, "Upgrade failed"))
            raise
        socket.ws = ws
        socket.open = True
        socket.connected = time.time()
        self.meter.connects += 1
        code, reason = 1005, "Client-side close frame status not set"
        try:
            async for msg in ws:
                socket.last_active = time.time()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._spawn(self._message(socket, msg.data))
                elif msg.type is WSMsgType.ERROR:
                    code, reason = 1009, "Message too big"
                    break
            if ws.close_code is not None and not socket.deleted:
                code = ws.close_code
                reason = "" if code != 1005 else reason
        finally:
            if socket.deleted:
                code, reason = 1000, "Connection deleted"
            if code == LOSE_DISCONNECT:
                socket.open = False
                socket.disconnected = True
                self.sockets.pop(socket.conn.connection_id, None)
            self._spawn(self._closed(socket, code, reason))
        return ws

    async def _message(self, socket: Socket, body: str | bytes) -> None:
        self.meter.messages_in += Meter.units(len(body.encode() if isinstance(body, str) else body))
        event = events.ws_message(socket.conn, body)
        try:
            await self._invoke(self.functions.message, event)
        except FunctionError:
            request_id = event["requestContext"]["requestId"]
            error = {"message": "Internal server error", "connectionId": socket.conn.connection_id}
            await self._send(socket, json.dumps({**error, "requestId": request_id}).encode())

    async def _closed(self, socket: Socket, code: int, reason: str) -> None:
        """The socket is gone: posts answer 410 from now on, and ``$disconnect`` runs (once)."""
        if socket.disconnected:
            return
        socket.disconnected = True
        if socket.ws is not None:
            self.meter.closed_connection_seconds += time.time() - socket.connected
        socket.open = False
        self.sockets.pop(socket.conn.connection_id, None)
        event = events.ws_disconnect(socket.conn, code, reason)
        with contextlib.suppress(FunctionError):  # best effort on AWS too: the sweep catches what it missed
            await self._invoke(self.functions.disconnect, event)

    async def _send(self, socket: Socket, data: bytes) -> bool:
        async with socket.send_lock:
            ws = socket.ws
            if not socket.open or ws is None or ws.closed:
                return False
            try:
                text = data.decode()
            except UnicodeDecodeError:
                await ws.send_bytes(data)
            else:
                await ws.send_str(text)
            socket.last_active = time.time()
            return True

    async def enforce_limits(self, interval: float) -> None:
        """Close connections idle for ``idle_timeout`` or older than ``max_connection_seconds`` with 1001,
        as API Gateway does (``$disconnect`` follows, like any close)."""
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for socket in list(self.sockets.values()):
                ws = socket.ws
                if not socket.open or ws is None or ws.closed:
                    continue
                if now - socket.last_active > self.idle_timeout or now - socket.connected > self.max_connection_seconds:
                    self._spawn(ws.close(code=1001, message=b"Going away"))

    async def http_api(self, request: web.Request) -> web.StreamResponse:
        self.meter.http_requests += 1
        body = await request.read()
        event = events.http_v2(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            raw_query=request.rel_url.raw_query_string,
            headers=list(request.headers.items()),
            body=body,
            source_ip=request.remote or "127.0.0.1",
            api_id=self.api_id,
            stage=self.http_stage,
            domain_name=request.host,
        )
        try:
            result = await self._invoke(self.functions.http_api, event)
        except FunctionError:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        return http_response(result)

    # -- the management API (execute-api @connections) ---------------------------------------------------

    async def post_to_connection(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.meter.posts += 1
        socket = self.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open:
            self.meter.gone += 1
            return _aws_error(410, "GoneException", "")
        if len(data) > MAX_MESSAGE_BYTES:
            return _aws_error(413, "PayloadTooLargeException", "Message too long")
        if not await self._send(socket, data):
            self.meter.gone += 1
            return _aws_error(410, "GoneException", "")
        self.meter.messages_out += Meter.units(len(data))
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        self.meter.gets += 1
        socket = self.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open:
            return _aws_error(410, "GoneException", "")
        identity = {"sourceIp": socket.conn.source_ip, "userAgent": socket.conn.user_agent or ""}
        return web.json_response(
            {"connectedAt": _iso(socket.connected), "identity": identity, "lastActiveAt": _iso(socket.last_active)}
        )

    async def delete_connection(self, request: web.Request) -> web.Response:
        self.meter.deletes += 1
        socket = self.sockets.get(request.match_info["connection_id"])
        if socket is None or not socket.open or socket.ws is None:
            return _aws_error(410, "GoneException", "")
        socket.deleted = True
        ws = socket.ws
        # Close in the background, as API Gateway does: DeleteConnection returns before $disconnect runs.
        self._spawn(ws.close(code=1000, message=b""))
        return web.Response(status=204)

    # -- the Lambda Invoke API ---------------------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if not self.lambdas.exists(name):
            return _aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        raw = await request.read()
        if kind == "Event" and len(raw) > MAX_EVENT_PAYLOAD:
            return _aws_error(413, "RequestEntityTooLargeException", "Request must be smaller than 262144 bytes")
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            return _aws_error(400, "InvalidRequestContentException", "Could not parse request body into json")
        if kind == "DryRun":
            return web.Response(status=204)
        if kind == "Event":
            self.lambdas.invoke_event(name, payload)
            return web.Response(status=202)
        try:
            result = await self.lambdas.invoke(name, payload)
        except FunctionError as exc:
            return web.json_response(exc.payload, headers={"X-Amz-Function-Error": "Unhandled"})
        return web.json_response(result, headers={"X-Amz-Executed-Version": "$LATEST"})

    # -- applications ------------------------------------------------------------------------------------

    def public_app(self, extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
        """``extra_routes`` adds the emulator's own pages (the debug console) ahead of the 404 catch-all."""
        app = web.Application(client_max_size=10 * 1024 * 1024)  # HTTP API payload quota
        app.router.add_get("/app/{key}", self.websocket)
        app.router.add_get("/", self.websocket)
        app.router.add_route("*", "/apps/{tail:.*}", self.http_api)
        if extra_routes is not None:
            extra_routes(app)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        return app

    def aws_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        for prefix in ("", "/{stage}"):
            path = prefix + "/@connections/{connection_id}"
            app.router.add_post(path, self.post_to_connection)
            app.router.add_get(path, self.get_connection)
            app.router.add_delete(path, self.delete_connection)
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)
        return app

    def metered(self) -> dict[str, float]:
        """The meter, with the connection time of the sockets still open counted up to now."""
        now = time.time()
        open_seconds = sum(now - s.connected for s in self.sockets.values() if s.open)
        values: dict[str, float] = dict(vars(self.meter))
        values["connection_seconds"] = values.pop("closed_connection_seconds") + open_seconds
        return values

    async def close(self, timeout: float) -> None:
        """Close every socket (1001 going away, each followed by ``$disconnect``) and wait for the handlers."""
        self.closing = True
        for socket in list(self.sockets.values()):
            if socket.ws is not None and not socket.ws.closed:
                self._spawn(socket.ws.close(code=1001, message=b"Going away"))
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(deadline - time.monotonic(), 0.01))


async def _not_found(request: web.Request) -> web.Response:
    # What the deployed CloudFront Function (cdk/cloudfront/rewrite.js) answers for any path that is
    # neither /app/{key} (WebSocket API) nor /apps/... (HTTP API).
    return web.Response(status=404, text="sockless: WebSocket clients connect to /app/{key}\n")


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
