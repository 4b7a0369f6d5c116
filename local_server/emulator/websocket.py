"""API Gateway's WebSocket API, emulated from the template: connections, route selection, integrations.

Each client frame is routed as API Gateway does: the route selection expression (``$request.body.event``)
picks a route key from the frame's JSON; a key with a route of its own goes there, anything else to
``$default``. A route's integration runs through ``INTEGRATIONS``, a table by integration type:
``AWS_PROXY`` invokes the Lambda function, ``MOCK`` runs the request template (its status code) and
answers with the integration response template when the route is two-way (the ``pusher:ping`` route).
Another type (an SQS integration, say) plugs in with ``register_integration``.

Behaviour copied from AWS because the handlers depend on it (docs/aws.md):
- the upgrade completes only after ``$connect`` returned 2xx; until then, and after close, a post to the
  connection answers 410 ``GoneException`` (the welcome function retries through that window);
- every client frame is a separate invocation, run concurrently (no per-connection ordering);
- ``DeleteConnection`` closes with 1000 and ``$disconnect`` follows; a failed ``$default`` invocation sends
  ``{"message": "Internal server error", ...}`` to the client;
- a frame over 32 KB or a message over 128 KB closes the connection with 1009 (API Gateway developer
  guide, "Quotas for configuring and running a WebSocket in API Gateway");
- a connection idle for 10 minutes, or open for 2 hours, is closed with 1001 (same page; configurable).

One thing AWS does and a client cannot cause: losing a ``$disconnect``. A client that closes with code
``LOSE_DISCONNECT`` (4999) gets its socket closed with no ``$disconnect`` event, so tests can prove the 410
cleanup and the sweep remove such connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from cost.meter import Meter
from local_server.emulator import events
from local_server.emulator.lambdas import FunctionError, LambdaService
from local_server.emulator.template import Api, Integration

log = logging.getLogger("sockless.emulator")

MAX_FRAME_BYTES = 32 * 1024  # API Gateway WebSocket frame size quota
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway WebSocket message payload quota
LOSE_DISCONNECT = 4999  # a client closing with this code plays "API Gateway never sent $disconnect"


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


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas; tests shorten the timings."""

    idle_timeout: float = 600.0  # 10 minutes without a message either way
    max_connection_seconds: float = 7200.0  # 2 hours, whatever the traffic
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_message_bytes: int = MAX_MESSAGE_BYTES


IntegrationHandler = Callable[["WebSocketApi", Socket, Integration, "str | bytes", str], Awaitable[None]]
INTEGRATIONS: dict[str, IntegrationHandler] = {}


def register_integration(integration_type: str, handler: IntegrationHandler) -> None:
    """Run routes whose integration has ``integration_type`` (the template's ``IntegrationType``) with
    ``handler(api, socket, integration, body, route_key)``."""
    INTEGRATIONS[integration_type] = handler


class WebSocketApi:
    def __init__(
        self,
        lambdas: LambdaService,
        api: Api,
        *,
        domain_name: str | None = None,
        limits: Limits,
        meter: Meter | None = None,
    ) -> None:
        self.lambdas = lambdas
        self.api = api
        self.api_id = api.id
        self.stage = api.stage
        self.limits = limits
        self.domain_name = domain_name
        self.sockets: dict[str, Socket] = {}
        # What API Gateway bills (messages both ways in 32 KB units, connection-minutes, access-log lines),
        # on the emulator's one meter (cost/meter.py) with the Lambda, DynamoDB and SQS units.
        self.meter = meter or Meter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.selection_field = _selection_field(api.route_selection)

    def unsupported(self) -> list[str]:
        """Start-up notes: routes whose integration type has no runner here."""
        notes = [
            f"WebSocket route {key}: integration type {integration.type} is not emulated (the route fails)"
            for key, integration in self.api.routes.items()
            if integration.type not in INTEGRATIONS
        ]
        if self.api.route_selection and self.selection_field is None:
            notes.append(f"route selection expression {self.api.route_selection} is not emulated: all go to $default")
        return notes

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def function_of(self, route_key: str) -> str | None:
        integration = self.api.routes.get(route_key)
        return integration.function if integration is not None else None

    # -- connections -------------------------------------------------------------------------------------

    async def connect(self, request: web.Request, query: list[tuple[str, str]]) -> web.StreamResponse:
        """An upgrade request at the stage root: ``$connect``, then the socket's life."""
        if self.closing:
            return web.Response(status=503)
        conn = events.WsConnection(
            connection_id=events.connection_id(),
            api_id=self.api_id,
            stage=self.stage,
            domain_name=self.domain_name or request.host,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent"),
        )
        socket = self.sockets[conn.connection_id] = Socket(conn)
        event = events.ws_connect(conn, list(request.headers.items()), query)
        connect = self.function_of("$connect")
        status = 200
        if connect is not None:
            try:
                result = await self.lambdas.invoke(connect, event)
            except FunctionError:
                self.sockets.pop(conn.connection_id, None)
                return web.json_response({"message": "Internal server error"}, status=500)
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if not 200 <= status < 300:
            self.sockets.pop(conn.connection_id, None)
            return web.Response(status=status)

        # aiohttp closes with 1009 past max_msg_size (the message quota); the frame quota is checked below.
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=self.limits.max_message_bytes)
        try:
            await ws.prepare(request)
        except BaseException:
            self._spawn(self._closed(socket, 1006, "Upgrade failed"))
            raise
        socket.ws = ws
        socket.open = True
        # The idle clock starts when the connection opens, not when $connect was called.
        socket.connected = socket.last_active = time.time()
        self.meter.connection_opened()
        code, reason = 1005, "Client-side close frame status not set"
        try:
            async for msg in ws:
                socket.last_active = time.time()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    size = len(msg.data.encode() if isinstance(msg.data, str) else msg.data)
                    if size > self.limits.max_frame_bytes:
                        # Clients send a message as one frame: past 32 KB that frame is over the quota.
                        code, reason = 1009, "Message too big"
                        await ws.close(code=1009, message=b"Message too big")
                        break
                    self._spawn(self._message(socket, msg.data))
                elif msg.type is WSMsgType.ERROR:
                    code, reason = 1009, "Message too big"
                    break
            if ws.close_code is not None and not socket.deleted and code != 1009:
                code = ws.close_code
                reason = "" if code != 1005 else reason
        finally:
            if socket.deleted:
                code, reason = 1000, "Connection deleted"
            if code == LOSE_DISCONNECT:
                self.meter.connection_closed(time.time() - socket.connected, disconnect_route=False)
                socket.open = False
                socket.disconnected = True
                self.sockets.pop(socket.conn.connection_id, None)
            self._spawn(self._closed(socket, code, reason))
        return ws

    def route_key(self, body: str | bytes) -> str:
        """The route a frame takes: its selection field's value when a route has that key, else ``$default``."""
        if self.selection_field is None:
            return "$default"
        try:
            value = json.loads(body).get(self.selection_field) if body else None
        except (ValueError, AttributeError):
            return "$default"
        if isinstance(value, str) and value in self.api.routes and not value.startswith("$"):
            return value
        return "$default"

    async def _message(self, socket: Socket, body: str | bytes) -> None:
        self.meter.ws_in(len(body.encode() if isinstance(body, str) else body))
        route_key = self.route_key(body)
        integration = self.api.routes.get(route_key)
        if integration is None:
            return  # no $default route: API Gateway drops the frame
        runner = INTEGRATIONS.get(integration.type)
        if runner is None:
            await self.internal_error(socket, events.ws_message(socket.conn, body, route_key))
            return
        await runner(self, socket, integration, body, route_key)

    async def internal_error(self, socket: Socket, event: dict[str, Any]) -> None:
        """What API Gateway sends the client when the integration failed."""
        request_id = event["requestContext"]["requestId"]
        error = {"message": "Internal server error", "connectionId": socket.conn.connection_id}
        await self.send(socket, json.dumps({**error, "requestId": request_id}).encode())

    async def _closed(self, socket: Socket, code: int, reason: str) -> None:
        """The socket is gone: posts answer 410 from now on, and ``$disconnect`` runs (once)."""
        if socket.disconnected:
            return
        socket.disconnected = True
        disconnect = self.function_of("$disconnect")
        if socket.ws is not None:
            self.meter.connection_closed(time.time() - socket.connected, disconnect_route=disconnect is not None)
        socket.open = False
        self.sockets.pop(socket.conn.connection_id, None)
        if disconnect is None:
            return
        event = events.ws_disconnect(socket.conn, code, reason)
        with contextlib.suppress(FunctionError):  # best effort on AWS too: the sweep catches what it missed
            await self.lambdas.invoke(disconnect, event)

    async def send(self, socket: Socket, data: bytes) -> bool:
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
            self.meter.ws_out(len(data))
            return True

    def delete(self, socket: Socket) -> None:
        """``DeleteConnection``: close in the background, as API Gateway does (the call returns before
        ``$disconnect`` runs)."""
        socket.deleted = True
        if socket.ws is not None:
            self._spawn(socket.ws.close(code=1000, message=b""))

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
                idle = now - socket.last_active > self.limits.idle_timeout
                if idle or now - socket.connected > self.limits.max_connection_seconds:
                    self._spawn(ws.close(code=1001, message=b"Going away"))

    def open_connection_minutes(self) -> float:
        """Connection-minutes of the sockets still open, up to now (the meter has the closed ones)."""
        now = time.time()
        return sum(now - s.connected for s in self.sockets.values() if s.open) / 60

    def metered(self) -> dict[str, float]:
        """API Gateway's part of the meter (``GET /@emulator/stats``), open connections counted up to now."""
        counts, units = self.meter.counted(), self.meter.snapshot()
        names = ("connects", "ws_in", "ws_out", "posts", "gone", "throttled", "gets", "deletes")
        values = {name: counts.get(name, 0.0) for name in names}
        values["http_requests"] = units.get("http_request", 0.0)
        minutes = units.get("ws_connection_minute", 0.0) + self.open_connection_minutes()
        values["connection_seconds"] = minutes * 60
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


def _selection_field(expression: str | None) -> str | None:
    """``$request.body.event`` -> ``event``; other expressions are not emulated."""
    if expression and expression.startswith("$request.body.") and expression.count(".") == 2:
        return expression.rsplit(".", 1)[1]
    return None


# -- integrations -----------------------------------------------------------------------------------------


async def lambda_proxy(
    api: WebSocketApi, socket: Socket, integration: Integration, body: str | bytes, key: str
) -> None:
    """``AWS_PROXY``: invoke the function with the message event; a failure reaches the client as API
    Gateway's ``Internal server error`` frame."""
    event = events.ws_message(socket.conn, body, key)
    if integration.function is None:
        await api.internal_error(socket, event)
        return
    try:
        result = await api.lambdas.invoke(integration.function, event)
    except FunctionError:
        await api.internal_error(socket, event)
        return
    if key in api.api.two_way_routes and isinstance(result, dict) and result.get("body") is not None:
        await api.send(socket, str(result["body"]).encode())


async def mock(api: WebSocketApi, socket: Socket, integration: Integration, body: str | bytes, key: str) -> None:
    """``MOCK``: the request template gives the status code; a two-way route answers with the integration
    response's template. Templates are used as they are: VTL variables (``$...``) are not evaluated."""
    selection = (integration.template_selection or "\\$default").replace("\\", "")
    template = integration.request_templates.get(selection) or integration.request_templates.get("$default", "")
    try:
        status = int(json.loads(template or "{}").get("statusCode", 200))
    except (ValueError, AttributeError):
        status = 500
    if not 200 <= status < 300:
        await api.internal_error(socket, events.ws_message(socket.conn, body, key))
        return
    response = integration.response_templates.get("$default")
    if key in api.api.two_way_routes and response is not None:
        await api.send(socket, response.encode())


register_integration("AWS_PROXY", lambda_proxy)
register_integration("MOCK", mock)
