"""The console's pages: ``GET /debug``, ``/debug/stream`` (server-sent events), the Event Creator, and ``mount``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

from local_server.debug.access import COOKIE, SESSION_SECONDS, Access, is_loopback, same_origin
from shared.debug import DebugTap, TapFeed
from shared.debug.creator import trigger_request
from shared.debug.state import app_state
from shared.http_api.base import HttpRequest, HttpResponse
from shared.limits.base import RateLimiter
from shared.services import Services
from shared.settings import AppConfig, Settings

STATIC = Path(__file__).resolve().parent.parent / "static"
TICK_SECONDS = 1.0  # counters and messages/s are pushed this often
STATE_REFRESH_SECONDS = 5.0  # the channel list is re-read at least this often, and at once after events
LOGIN_ATTEMPTS_PER_MINUTE = 10
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make Chromium send "Origin: null"
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
}


@dataclass(frozen=True)
class Backend:
    """What the console reads and publishes through: the local server's services, or the emulator's."""

    apps: Sequence[AppConfig]
    rest: Callable[[HttpRequest], Awaitable[HttpResponse]]  # the REST API handler (the Event Creator's path)
    state: Callable[[AppConfig], Awaitable[dict[str, Any]]]  # connections and channels of an app
    limiter: RateLimiter  # login attempts per address
    lambda_invocations: bool = False  # the emulator reports its Lambda invocations
    # The emulator's running AWS bill: what a month costs at the current traffic (``GET /debug/cost``).
    cost: Callable[[], dict[str, Any]] | None = None
    close: Callable[[], Awaitable[None]] | None = None  # releases what the backend opened


def services_backend(services: Services) -> Backend:
    async def state(app: AppConfig) -> dict[str, Any]:
        return await app_state(services.store, app.id)

    return Backend(apps=services.settings.apps, rest=services.rest.handle, state=state, limiter=services.limiter)


class DebugConsole:
    def __init__(self, tap: DebugTap, backend: Backend, *, host: str, admin_token: str | None) -> None:
        self.tap = tap
        self.backend = backend
        self.apps: dict[str, AppConfig] = {app.id: app for app in backend.apps}
        self.access = Access(self.apps, open_listener=is_loopback(host), admin_token=admin_token)
        self._page = (STATIC / "debug.html").read_bytes()
        tap.set_redactions([*(app.secret for app in backend.apps), *([admin_token] if admin_token else [])])

    # -- pages ----------------------------------------------------------------------------------------

    def _login_page(self, status: int, note: str = "") -> web.Response:
        text = (STATIC / "login.html").read_text(encoding="utf-8").replace("{{note}}", escape(note))
        return web.Response(status=status, text=text, content_type="text/html", headers=_SECURITY_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        if not self.access.scope(request):
            return self._login_page(401)
        return web.Response(body=self._page, content_type="text/html", headers=_SECURITY_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"debug.js": "text/javascript", "debug.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=types[name], headers=_SECURITY_HEADERS)

    async def login(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return self._login_page(403, "Cross-site login refused.")
        ip = request.remote or ""
        if not await self.backend.limiter.hit(f"debug_login:{ip}", LOGIN_ATTEMPTS_PER_MINUTE, 60.0):
            return self._login_page(429, "Too many attempts; wait a minute.")
        form = await request.post()
        token = form.get("token")
        scope = self.access.token_scope(token) if isinstance(token, str) and token else frozenset()
        if not scope:
            return self._login_page(401, "Not accepted: give an app secret or the admin token.")
        response = web.HTTPSeeOther("/debug")
        response.set_cookie(
            COOKIE,
            self.access.session_cookie(scope),
            max_age=SESSION_SECONDS,
            path="/debug",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/debug")
        response.del_cookie(COOKIE, path="/debug")
        raise response

    async def session(self, request: web.Request) -> web.Response:
        scope = self.access.scope(request)
        if not scope:
            return _json(401, {"error": "Debug console: authentication required"})
        apps = [{"id": app.id, "key": app.key} for app_id, app in self.apps.items() if app_id in scope]
        body = {
            "apps": apps,
            "login": not self.access.open_listener,
            "lambda": self.backend.lambda_invocations,
            "cost": self.backend.cost is not None,
        }
        return _json(200, {**body, "buffer": self.tap.buffer_size})

    def _app(self, request: web.Request, app_id: str | None) -> AppConfig:
        scope = self.access.scope(request)
        if not scope:
            raise _error(401, "Debug console: authentication required")
        if app_id is None or app_id not in scope:
            raise _error(404 if app_id not in self.apps else 403, "Unknown app, or not yours")
        return self.apps[app_id]

    # -- the stream -----------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``hello``, then log events as they happen, ``state`` (connections and
        channels) after changes and every few seconds, ``rate`` (messages/s) every second, and
        ``dropped`` when this tab fell behind and lost events."""
        app = self._app(request, request.query.get("app"))
        response = web.StreamResponse(
            headers={**_SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        # A tab may ask for a smaller buffer than the server's (``?buffer=N``), never a larger one.
        asked = request.query.get("buffer", "")
        size = min(max(int(asked), 10), self.tap.buffer_size) if asked.isdigit() else None
        subscription = self.tap.subscribe({app.id}, maxsize=size)
        try:
            await self._pump(response, subscription, app)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the tab went away (or the server is stopping)
        finally:
            subscription.close()
        return response

    async def _pump(self, response: web.StreamResponse, subscription: TapFeed, app: AppConfig) -> None:
        loop = asyncio.get_running_loop()
        await response.write(_sse({"type": "hello", "app_id": app.id, "buffer": subscription.maxsize}))
        sent_before = self.tap.sent.get(app.id, 0.0)
        tick_at = loop.time()
        next_tick = tick_at
        next_state = tick_at
        dirty = True
        while not subscription.closed:
            items, dropped = await subscription.get(timeout=max(next_tick - loop.time(), 0))
            chunks: list[bytes] = []
            if dropped:
                total = subscription.total_dropped
                chunks.append(_sse({"type": "dropped", "count": dropped, "total": total}))
            if items:
                dirty = True
                chunks.append(b"".join(b"data: " + item.encode() + b"\n\n" for item in items))
            now = loop.time()
            if now >= next_tick:
                sent, elapsed = self.tap.sent.get(app.id, 0.0), now - tick_at
                # The first tick comes at once: too short a window to divide by.
                rate = (sent - sent_before) / elapsed if elapsed >= TICK_SECONDS / 2 else 0.0
                sent_before, tick_at, next_tick = sent, now, now + TICK_SECONDS
                total = subscription.total_dropped
                tick = {"type": "rate", "messages_per_second": round(rate, 1), "dropped": total}
                if self.backend.cost is not None:
                    tick["usd_per_month"] = self.backend.cost()["usd_per_month"]
                chunks.append(_sse(tick))
                if dirty or now >= next_state:
                    state = await self.backend.state(app)
                    text = self.tap.scrub(json.dumps({"type": "state", **state}, separators=(",", ":"), default=str))
                    chunks.append(b"data: " + text.encode() + b"\n\n")
                    dirty, next_state = False, now + STATE_REFRESH_SECONDS
            if chunks:
                await response.write(b"".join(chunks))

    async def cost(self, request: web.Request) -> web.Response:
        """``GET /debug/cost``: the emulated stack's bill a month at the current traffic, line by line
        (the whole stack's, not one app's: any signed-in session may read it)."""
        if not self.access.scope(request):
            return _json(401, {"error": "Debug console: authentication required"})
        if self.backend.cost is None:
            return _json(404, {"error": "no AWS meter here (the emulator has one: --emulate-lambda)"})
        return _json(200, self.backend.cost())

    # -- the Event Creator ----------------------------------------------------------------------------

    async def create_event(self, request: web.Request) -> web.Response:
        """``POST /debug/apps/{app_id}/events`` with JSON ``{channel | channels, name, data, socket_id?}``:
        signed here with the app's secret, then through the REST handler like any SDK's publish."""
        app = self._app(request, request.match_info["app_id"])
        if not same_origin(request) or request.content_type != "application/json":
            return _json(403, {"error": "Event Creator: same-origin JSON requests only"})
        try:
            body = await request.json()
        except ValueError:
            return _json(400, {"error": "Body is not JSON"})
        if not isinstance(body, dict):
            return _json(400, {"error": "Body must be a JSON object"})
        channels = body.get("channels")
        if channels is None:
            channels = [c.strip() for c in str(body.get("channel") or "").split(",") if c.strip()]
        data = body.get("data", "")
        socket_id = body.get("socket_id")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            return _json(400, {"error": "channels must be a list of channel names"})
        signed = trigger_request(
            app,
            channels=channels,
            name=str(body.get("name") or ""),
            data=data if isinstance(data, str) else json.dumps(data),
            socket_id=str(socket_id) if socket_id else None,
            ip=request.remote or "",
        )
        result = await self.backend.rest(signed)
        return _json(result.status, result.body)

    # -- wiring ---------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Register before any catch-all route; the tap's subscriptions end when the app shuts down."""
        app.router.add_get("/debug", self.page)
        app.router.add_get("/debug/session", self.session)
        app.router.add_get("/debug/stream", self.stream)
        app.router.add_get("/debug/cost", self.cost)
        app.router.add_post("/debug/login", self.login)
        app.router.add_post("/debug/logout", self.logout)
        app.router.add_post("/debug/apps/{app_id}/events", self.create_event)
        app.router.add_get("/debug/{name}", self.asset)

        async def end_streams(_app: web.Application) -> None:
            self.tap.close()
            if self.backend.close is not None:
                await self.backend.close()

        app.on_shutdown.append(end_streams)


def _sse(message: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=_SECURITY_HEADERS
    )


def _error(status: int, message: str) -> web.HTTPException:
    kind = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden}.get(status, web.HTTPNotFound)
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=_SECURITY_HEADERS)


CONSOLE = web.AppKey("debug_console", DebugConsole)


def mount(app: web.Application, services: Services, settings: Settings | None = None) -> DebugConsole:
    """The local server's console over the tap its services were built with; adds the routes to ``app``."""
    settings = settings or services.settings
    tap = services.tap
    if tap is None:
        raise ValueError("the debug console needs services built with a tap (build_services(tap=...))")
    console = DebugConsole(tap, services_backend(services), host=settings.host, admin_token=settings.admin_token)
    console.add_routes(app)
    app[CONSOLE] = console
    return console
