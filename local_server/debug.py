"""The debug console: ``GET /debug`` (one page), ``/debug/stream`` (server-sent events) and the Event Creator.

Like Pusher's dashboard Debug Console: live counters, occupied channels with their subscribers and presence
members, and a log of what the engine does, fed by the engine's ``DebugTap`` (never by polling from the
page). Each open page holds one bounded ``Subscription``: a slow tab loses events (and is told how many),
it never slows the server.

Access: on a loopback listener, anyone who can reach the port can already do everything the console
shows, so it is open (to requests whose ``Host`` is a loopback name, which keeps DNS-rebinding pages out).
On any other listener every console request needs the app's secret or the ``admin_token``: as a bearer
token, or once through the login form, which sets an HMAC-signed session cookie. A secret grants that
app only; the admin token grants every app. The page itself holds no secret: the Event Creator's request
is signed on the server and handed to the same REST handler an SDK's request reaches.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from shared.debug import DebugTap, Subscription
from shared.debug.creator import trigger_request
from shared.debug.state import app_state
from shared.http_api.base import HttpRequest, HttpResponse
from shared.limits.base import RateLimiter
from shared.services import Services
from shared.settings import AppConfig, Settings

if TYPE_CHECKING:
    from local_server.emulator.aws import Resources
    from local_server.emulator.gateway import Gateway
    from local_server.emulator.lambdas import LambdaService

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "sockless_debug"
SESSION_SECONDS = 12 * 3600
TICK_SECONDS = 1.0  # counters and messages/s are pushed this often
STATE_REFRESH_SECONDS = 5.0  # the channel list is re-read at least this often, and at once after events
LOGIN_ATTEMPTS_PER_MINUTE = 10
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make Chromium send "Origin: null"
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
}


def is_loopback(host: str) -> bool:
    """Whether a listen address or a ``Host`` name can only be reached from this machine."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Backend:
    """What the console reads and publishes through: the local server's services, or the emulator's."""

    apps: Sequence[AppConfig]
    rest: Callable[[HttpRequest], Awaitable[HttpResponse]]  # the REST API handler (the Event Creator's path)
    state: Callable[[AppConfig], Awaitable[dict[str, Any]]]  # connections and channels of an app
    limiter: RateLimiter  # login attempts per address
    lambda_invocations: bool = False  # the emulator reports its Lambda invocations
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
        self.open_listener = is_loopback(host)
        self.admin_token = admin_token or None
        self._session_key = secrets.token_bytes(32)  # sessions end with the process
        self._page = (STATIC / "debug.html").read_bytes()
        tap.set_redactions([*(app.secret for app in backend.apps), *([admin_token] if admin_token else [])])

    # -- access ---------------------------------------------------------------------------------------

    def _token_scope(self, token: str) -> frozenset[str]:
        if self.admin_token is not None and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return frozenset(self.apps)
        # Every secret is compared, so the time taken does not tell which app (if any) came close.
        matched = [app.id for app in self.apps.values() if hmac.compare_digest(token.encode(), app.secret.encode())]
        return frozenset(matched)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._session_key, payload.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, scope: frozenset[str]) -> str:
        # App ids are [A-Za-z0-9_.-]: "," and "|" cannot occur in them.
        payload = f"{','.join(sorted(scope))}|{int(time.time()) + SESSION_SECONDS}"
        return f"{payload}|{self._sign(payload)}"

    def _cookie_scope(self, value: str) -> frozenset[str]:
        payload, _, mac = value.rpartition("|")
        ids, _, expires = payload.partition("|")
        if not payload or not hmac.compare_digest(mac.encode(), self._sign(payload).encode()):
            return frozenset()
        if not expires.isdigit() or int(expires) < time.time():
            return frozenset()
        return frozenset(ids.split(",")) & frozenset(self.apps)

    def scope(self, request: web.Request) -> frozenset[str]:
        """The app ids this request may see (empty: none, refuse)."""
        if self.open_listener and is_loopback(request.url.host or ""):
            return frozenset(self.apps)
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return self._token_scope(auth[7:].strip())
        cookie = request.cookies.get(COOKIE)
        return self._cookie_scope(cookie) if cookie else frozenset()

    def _same_origin(self, request: web.Request) -> bool:
        """Console writes from another site are refused (CSRF): a present ``Origin`` must be this host."""
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    # -- pages ----------------------------------------------------------------------------------------

    def _login_page(self, status: int, note: str = "") -> web.Response:
        text = (STATIC / "login.html").read_text(encoding="utf-8").replace("{{note}}", escape(note))
        return web.Response(status=status, text=text, content_type="text/html", headers=_SECURITY_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        if not self.scope(request):
            return self._login_page(401)
        return web.Response(body=self._page, content_type="text/html", headers=_SECURITY_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"debug.js": "text/javascript", "debug.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=types[name], headers=_SECURITY_HEADERS)

    async def login(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return self._login_page(403, "Cross-site login refused.")
        ip = request.remote or ""
        if not await self.backend.limiter.hit(f"debug_login:{ip}", LOGIN_ATTEMPTS_PER_MINUTE, 60.0):
            return self._login_page(429, "Too many attempts; wait a minute.")
        form = await request.post()
        token = form.get("token")
        scope = self._token_scope(token) if isinstance(token, str) and token else frozenset()
        if not scope:
            return self._login_page(401, "Not accepted: give an app secret or the admin token.")
        response = web.HTTPSeeOther("/debug")
        response.set_cookie(
            COOKIE,
            self.session_cookie(scope),
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
        scope = self.scope(request)
        if not scope:
            return _json(401, {"error": "Debug console: authentication required"})
        apps = [{"id": app.id, "key": app.key} for app_id, app in self.apps.items() if app_id in scope]
        body = {"apps": apps, "login": not self.open_listener, "lambda": self.backend.lambda_invocations}
        return _json(200, {**body, "buffer": self.tap.buffer_size})

    def _app(self, request: web.Request, app_id: str | None) -> AppConfig:
        scope = self.scope(request)
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

    async def _pump(self, response: web.StreamResponse, subscription: Subscription, app: AppConfig) -> None:
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
                chunks.append(_sse({"type": "rate", "messages_per_second": round(rate, 1), "dropped": total}))
                if dirty or now >= next_state:
                    state = await self.backend.state(app)
                    text = self.tap.scrub(json.dumps({"type": "state", **state}, separators=(",", ":"), default=str))
                    chunks.append(b"data: " + text.encode() + b"\n\n")
                    dirty, next_state = False, now + STATE_REFRESH_SECONDS
            if chunks:
                await response.write(b"".join(chunks))

    # -- the Event Creator ----------------------------------------------------------------------------

    async def create_event(self, request: web.Request) -> web.Response:
        """``POST /debug/apps/{app_id}/events`` with JSON ``{channel | channels, name, data, socket_id?}``:
        signed here with the app's secret, then through the REST handler like any SDK's publish."""
        app = self._app(request, request.match_info["app_id"])
        if not self._same_origin(request) or request.content_type != "application/json":
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


def emulator_console(
    settings: Settings, lambdas: LambdaService, gateway: Gateway, resources: Resources
) -> DebugConsole:
    """The emulator's console: the same page, fed by the engines of its Lambda "containers" (worker threads
    of this process, which attach to the installed tap when they build their services) and by every
    invocation with its handler and duration. The Event Creator goes through the ``http_api`` function,
    and the channel list is read from the DynamoDB table (in moto) the functions use. Add the routes with
    ``gateway.public_app(console.add_routes)``."""
    from local_server.emulator import events
    from shared.debug import install
    from shared.limits.memory import MemoryRateLimiter
    from shared.store.dynamodb import DynamoDBChannelStore

    tap = DebugTap()
    install(tap)
    lambdas.observer = tap.lambda_invocation
    store = DynamoDBChannelStore(resources.table_name, region=resources.region, endpoint_url=resources.moto_url)

    async def rest(request: HttpRequest) -> HttpResponse:
        event = events.http_v2(
            method=request.method,
            raw_path=request.path,
            raw_query=urlencode(request.query),
            headers=dict(request.headers),
            body=request.body,
            source_ip=request.ip or "127.0.0.1",
            api_id=gateway.api_id,
            stage=gateway.http_stage,
            domain_name=settings.host,
        )
        result = await lambdas.invoke(gateway.functions.http_api, event)
        if not isinstance(result, dict) or "statusCode" not in result:
            return HttpResponse(200, result)
        raw = result.get("body") or ""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"body": raw}
        return HttpResponse(int(result["statusCode"]), body)

    async def state(app: AppConfig) -> dict[str, Any]:
        return await app_state(store, app.id)

    async def close() -> None:
        install(None)
        lambdas.observer = None
        await store.close()

    backend = Backend(
        apps=settings.apps,
        rest=rest,
        state=state,
        limiter=MemoryRateLimiter(),
        lambda_invocations=True,
        close=close,
    )
    return DebugConsole(tap, backend, host=settings.host, admin_token=settings.admin_token)
