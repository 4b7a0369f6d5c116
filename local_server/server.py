"""The aiohttp application: Pusher WebSocket endpoint, REST API, health, and the activity sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from local_server.debug import views as debug
from local_server.transport import Cork, WsTransport
from shared.errors import OverCapacity, PathNotFound, PusherError, StoreUnavailable
from shared.http_api import openapi
from shared.http_api.base import HttpRequest
from shared.protocol import frames
from shared.ratelog import RateLimitedLog
from shared.refusals import report as report_refusal
from shared.sender.local import LocalSender
from shared.services import Services
from shared.types import SocketId

log = logging.getLogger("sockless")
store_log = RateLimitedLog(log)


class Handlers:
    """The WebSocket handlers still running. A stopping server waits for them after closing their sockets: each
    removes its connection and queues the departure webhooks (``channel_vacated``, ``member_removed``) only then,
    and the webhook queue is drained after that, not before (with the Redis store the removal takes round trips,
    and a node drained an empty queue, then exited leaving every departure queued in Redis undelivered)."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()

    async def wait(self, timeout: float) -> None:
        if self.running:
            await asyncio.wait(set(self.running), timeout=timeout)


SERVICES = web.AppKey("services", Services)
SENDER = web.AppKey("sender", LocalSender)
CORK = web.AppKey("cork", Cork)
HANDLERS = web.AppKey("handlers", Handlers)


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _closing(status: int, error: str) -> web.Response:
    """An answer after which the connection ends (``Connection: close``): the request's body was not read."""
    refused = _json(status, {"error": error})
    refused.force_close()
    return refused


async def _refuse_socket(request: web.Request, exc: PusherError) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    key = request.match_info.get("key")
    app = await services.apps.by_key(key) if key else None  # never the key itself: unknown keys are unbounded
    report_refusal(
        services.engine.metrics,
        kind="websocket",
        app_id=app.id if app is not None else None,
        code=exc.code,
        reason=exc.message,
        client=request.remote,
    )
    ws = web.WebSocketResponse(autoping=False, compress=False)
    await ws.prepare(request)
    await ws.send_str(frames.error_frame(exc.message, exc.code).decode())
    await ws.close(code=exc.code or 4000, message=exc.message.encode()[:120])
    return ws


async def websocket(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    sender = request.app[SENDER]
    engine = services.engine
    try:
        app = await engine.authorize_connection(
            request.match_info["key"], request.query.get("protocol"), request.headers.get("Origin"), request.remote
        )
        connection = await engine.connect(app)
    except PusherError as exc:
        return await _refuse_socket(request, exc)
    except StoreUnavailable as exc:
        # The store is down: a refusal, not a 500. 4100 is pusher-js's "back off, then reconnect" (4200 would
        # reconnect at once and hammer a store that is down); the same code the engine uses mid-connection.
        store_log.warning("server:store", "store unavailable for a new connection: %s", exc)
        return await _refuse_socket(request, OverCapacity("Service temporarily unavailable, reconnect later"))

    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=0)
    socket_id: SocketId = connection.socket_id
    try:
        await ws.prepare(request)
    except BaseException:
        await engine.disconnect(app, socket_id)
        raise
    loop = asyncio.get_running_loop()
    assert request.transport is not None
    transport = WsTransport(ws, request.transport, loop.time(), request.app[CORK], app_id=app.id, socket_id=socket_id)
    sender.register(socket_id, transport)
    engine.metrics.gauge("connections", app.id, 1)  # open sockets of this node (see Engine.count_connections)
    handlers = request.app[HANDLERS].running
    task = asyncio.current_task()
    assert task is not None
    handlers.add(task)
    try:
        await engine.send(app, socket_id, engine.welcome(socket_id))
        async for msg in ws:
            transport.seen(loop.time())
            if msg.type is WSMsgType.TEXT:
                await engine.handle(app, socket_id, msg.data)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await engine.handle_binary(app, socket_id)
            elif msg.type is WSMsgType.ERROR:
                break
    except Exception:
        log.exception("websocket handler failed for %s", socket_id)
    finally:
        sender.unregister(socket_id)
        engine.metrics.gauge("connections", app.id, -1)
        try:
            # The code this server closed with (4100 for a slow client) even when the client never answered it.
            await engine.disconnect(app, socket_id, close_code=transport.close_code or ws.close_code)
        except StoreUnavailable as exc:
            # The record stays behind; the cluster's reconciliation removes it once the store is back.
            store_log.warning("server:store", "store unavailable while removing %s: %s", socket_id, exc)
        finally:
            handlers.discard(task)
    return ws


async def rest(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    max_body = services.settings.max_http_body_kb * 1024
    if request.content_length is not None and request.content_length > max_body:
        return await _refused(request, 413, "Request body too large")
    # read(n) returns what is buffered, not n bytes: loop, or a body split across TCP segments arrives cut.
    body = bytearray()
    deadline = services.settings.transport.body_timeout_seconds
    try:
        # A body trickled byte by byte would hold the connection for ever (the head's timeout is over), and so
        # does a kept-alive request whose "Content-Encoding: deflate" body does not decode (aiohttp 3.14 never
        # ends the read): a deadline for the whole body.
        async with asyncio.timeout(deadline):
            while len(body) <= max_body and (chunk := await request.content.read(max_body + 1 - len(body))):
                body += chunk
    except web.RequestPayloadError:  # e.g. "Content-Encoding: gzip" on a body that is not gzip
        # The rest of the body cannot be read past the error, so aiohttp closes the connection after the answer:
        # say so, or the client sends its next request on a connection that is about to be reset.
        return await _refused(request, 400, "Request body could not be decoded", close=True)
    except TimeoutError:
        reason = f"request body not complete within {deadline:g} s"
        report_refusal(
            services.engine.metrics, kind="http", app_id=None, code=408, reason=reason, client=request.remote
        )
        return _closing(408, "Request body not received in time")
    response = await services.rest.handle(_rest_request(request, bytes(body)))
    reply = _json(response.status, response.body)
    reply.headers.update(response.headers)
    return reply


def _rest_request(request: web.Request, body: bytes) -> HttpRequest:
    return HttpRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        body=body,
        ip=request.remote or "",
        headers=dict(request.headers),
    )


async def _refused(request: web.Request, status: int, error: str, *, close: bool = False) -> web.Response:
    """A REST request refused before its body is read whole: logged, counted and shown in the app's console
    by the router, like the refusals it makes itself."""
    response = await request.app[SERVICES].rest.refuse(_rest_request(request, b""), status, error)
    return _closing(status, error) if close else _json(response.status, response.body)


async def openapi_json(_request: web.Request) -> web.Response:
    return _json(200, openapi.build())


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    app_id = request.match_info.get("app_id")
    if app_id is not None:
        app = await services.apps.by_id(app_id)
        if app is None:
            return _json(404, {"error": "App not found"})
        if not app.enabled:
            return _json(503, {"ok": False, "error": "App is disabled"})
    checks = await services.health()
    ok = all(checks.values())
    return _json(200 if ok else 503, {"ok": ok, "checks": checks})


async def root(_request: web.Request) -> web.Response:
    return _json(200, {"ok": True, "server": "sockless"})


async def not_found(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _refuse_socket(request, PathNotFound(f"Path not found: {request.path[:64]}"))
    return _json(404, {"error": "Not found"})


async def sweep_idle(app: web.Application) -> None:
    """Ping sockets silent for ``activity_timeout``; close with 4201 those silent ``pong_timeout`` longer."""
    services = app[SERVICES]
    sender = app[SENDER]
    activity = services.settings.activity_timeout
    pong = services.settings.pong_timeout
    loop = asyncio.get_running_loop()
    interval = max(min(activity, pong) / 4, 0.05)
    closing: set[asyncio.Task[None]] = set()
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        for _socket_id, transport in sender.transports():
            if not isinstance(transport, WsTransport) or transport.closing:
                continue
            if transport.pinged_at is not None:
                if now - transport.pinged_at > pong:
                    task = asyncio.create_task(transport.close(4201, "Pong reply not received"))
                    closing.add(task)
                    task.add_done_callback(closing.discard)
            elif now - transport.last_seen > activity:
                transport.pinged_at = now
                transport.write(frames.PING)


async def _start_background(app: web.Application) -> Any:
    tasks = [asyncio.create_task(sweep_idle(app))]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(
    services: Services, sender: LocalSender, cork: Cork, handlers: Handlers | None = None
) -> web.Application:
    """``sender`` writes through ``cork`` (its fanout), the one the server flushes."""
    app = web.Application(client_max_size=services.settings.max_http_body_kb * 1024 + 1)
    app[SERVICES] = services
    app[SENDER] = sender
    app[CORK] = cork
    app[HANDLERS] = handlers or Handlers()
    app.router.add_get("/app/{key}", websocket)
    # [\s\S]: a decoded path may hold a newline (%0A), which ".*" would not match, leaving aiohttp's text 404.
    app.router.add_route("*", "/apps/{tail:[\\s\\S]*}", rest)
    app.router.add_get("/up", health)
    app.router.add_get("/up/{app_id}", health)
    app.router.add_get("/", root)
    app.router.add_get("/openapi.json", openapi_json)
    if services.settings.debug_console:
        debug.mount(app, services)  # GET /debug (docs/debug-console.md)
    app.router.add_route("*", "/{tail:[\\s\\S]*}", not_found)
    app.cleanup_ctx.append(_start_background)
    return app
