"""Routes signed REST requests to their handlers and maps every failure to a JSON error response.

Order of checks (each answers with its own status, so a client can tell what to fix): per-IP rate limit
(429), route (404/405), body size (413), app (404), signature (401), app enabled (403), per-app rate limit
(429), then the handler's own validation (400/413). Nothing is published before all of them pass.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.auth import verify_request
from shared.errors import HttpError, StoreUnavailable
from shared.http_api import events, queries, users
from shared.http_api.base import HttpRequest, HttpResponse
from shared.ratelog import RateLimitedLog, clean
from shared.refusals import report as report_refusal
from shared.settings import AppConfig, RateLimit

if TYPE_CHECKING:
    from shared.engine.core import Engine
    from shared.limits.base import RateLimiter

_log = RateLimitedLog(logging.getLogger("sockless.http_api"))

Handler = Callable[["Engine", AppConfig, HttpRequest, "re.Match[str]"], Awaitable[Any]]

_APP_PATH = re.compile(r"/apps/(?P<app_id>[^/]+)(?P<rest>/.*)")
WRITE, READ = "write", "read"
# Refusals answered before the app is looked up (route 404, 405, 413): the app is looked up for the console.
_BEFORE_THE_APP = frozenset({404, 405, 413})


class _Refused(HttpError):
    """An ``HttpError`` whose response needs headers (``Retry-After`` on 429, ``Allow`` on 405)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(status, message)
        self.headers = headers


async def _events(engine: Engine, app: AppConfig, request: HttpRequest, _m: re.Match[str]) -> Any:
    return await events.trigger(engine, app, request.body)


async def _batch(engine: Engine, app: AppConfig, request: HttpRequest, _m: re.Match[str]) -> Any:
    return await events.trigger_batch(engine, app, request.body)


async def _channels(engine: Engine, app: AppConfig, request: HttpRequest, _m: re.Match[str]) -> Any:
    return await queries.list_channels(engine, app, request.query)


async def _channel(engine: Engine, app: AppConfig, request: HttpRequest, m: re.Match[str]) -> Any:
    return await queries.channel_info(engine, app, m["channel"], request.query)


async def _users(engine: Engine, app: AppConfig, request: HttpRequest, m: re.Match[str]) -> Any:
    return await queries.channel_users(engine, app, m["channel"])


async def _terminate(engine: Engine, app: AppConfig, request: HttpRequest, m: re.Match[str]) -> Any:
    return await users.terminate_connections(engine, app, m["user_id"], request.body)


class RestApi:
    """The Pusher REST API (docs/sources.md#rest-api-and-request-signing); extra routes register with :meth:`route`."""

    def __init__(
        self,
        engine: Engine,
        limiter: RateLimiter,
        *,
        per_ip: RateLimit | None = None,
        max_body_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.limiter = limiter
        self.per_ip = per_ip
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self.route("POST", r"/events", _events, WRITE)
        self.route("POST", r"/batch_events", _batch, WRITE)
        self.route("GET", r"/channels", _channels, READ)
        self.route("GET", r"/channels/(?P<channel>[^/]+)", _channel, READ)
        self.route("GET", r"/channels/(?P<channel>[^/]+)/users", _users, READ)
        self.route("POST", r"/users/(?P<user_id>[^/]+)/terminate_connections", _terminate, WRITE)

    def route(self, method: str, pattern: str, handler: Handler, kind: str) -> None:
        self._routes.append((method, re.compile(pattern), handler, kind))

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Never raises: a bug or an unreachable store is a JSON 500/503, never a dropped connection. Every
        error answer is reported as a refusal (shared/refusals.py) and shown in the app's debug console."""
        found: list[AppConfig | None] = []  # the app, once looked up (None: unknown)
        try:
            return HttpResponse(200, await self._dispatch(request, found))
        except _Refused as exc:
            response = HttpResponse(exc.status, {"error": exc.message}, exc.headers)
        except HttpError as exc:
            response = HttpResponse.error(exc.status, exc.message)
        except StoreUnavailable as exc:
            # Expected while a backend is down: one line per interval, no traceback.
            _log.warning("rest:store", "store unavailable for REST %s: %s", request.method, clean(exc))
            response = HttpResponse(503, {"error": "Service temporarily unavailable"}, {"Retry-After": "1"})
        except Exception as exc:
            _log.error("rest:bug", "REST handler failed for %s %s", request.method, clean(request.path), exc_info=exc)
            response = HttpResponse.error(500, "Internal server error")
        if found:
            app = found[0]
        elif response.status in _BEFORE_THE_APP:
            app = await self._app_of(request)  # refused before its lookup: still shown in the app's console
        else:
            app = None  # 429 per address, 503, 500: no lookup that a flood or an outage would multiply
        self._refused(request, app, response)
        return response

    async def refuse(self, request: HttpRequest, status: int, message: str) -> HttpResponse:
        """The answer to a request an edge refuses before :meth:`handle` (a Content-Length over the limit, a
        body that does not decode), reported, counted and shown like the router's own refusals."""
        response = HttpResponse.error(status, message)
        self._refused(request, await self._app_of(request), response)
        return response

    async def _app_of(self, request: HttpRequest) -> AppConfig | None:
        m = _APP_PATH.fullmatch(request.path)
        if m is None:
            return None
        try:
            return await self.engine.app_by_id(m["app_id"])
        except StoreUnavailable:
            return None

    def _refused(self, request: HttpRequest, app: AppConfig | None, response: HttpResponse) -> None:
        message = response.body.get("error", "") if isinstance(response.body, dict) else ""
        engine = self.engine
        report_refusal(
            engine.metrics,
            kind="rest",
            app_id=app.id if app is not None else None,
            code=response.status,
            reason=f"{request.method} {request.path[:100]}: {message}",
            client=request.ip,
        )
        if app is not None:
            engine.observer.rest_refused(
                app.id, request.method, request.path, response.status, str(message), request.ip
            )

    async def _dispatch(self, request: HttpRequest, found: list[AppConfig | None]) -> Any:
        if self.per_ip is not None and not await self.limiter.hit(
            f"http_ip:{request.ip}", self.per_ip.max_requests, self.per_ip.window_seconds
        ):
            retry = str(math.ceil(self.per_ip.window_seconds))
            raise _Refused(429, "Too many requests from this address", {"Retry-After": retry})
        m = _APP_PATH.fullmatch(request.path)
        if m is None:
            raise HttpError(404, "Not found")
        handler, match, kind = self._match(request.method, m["rest"])
        if len(request.body) > self.max_body_bytes:
            raise HttpError(413, "Request body too large")
        app = await self.engine.app_by_id(m["app_id"])
        found.append(app)  # from here on, a refusal is shown in this app's debug console
        if app is None:
            raise HttpError(404, "App not found")
        verify_request(
            key=app.key,
            secret=app.secret,
            method=request.method,
            path=request.path,
            params=request.query,
            body=request.body,
            now=self.clock(),
        )
        if not app.enabled:
            raise HttpError(403, "App is disabled")
        limit = app.max_backend_events_per_second if kind == WRITE else app.max_read_requests_per_second
        if limit is not None and not await self.limiter.hit(f"http_app:{kind}:{app.id}", limit, 1.0):
            raise _Refused(429, f"App is over its {kind} request rate limit", {"Retry-After": "1"})
        self.engine.metrics.count("http_calls", app.id)
        self.engine.metrics.count("http_bytes_received", app.id, len(request.body))
        return await handler(self.engine, app, request, match)

    def _match(self, method: str, rest: str) -> tuple[Handler, re.Match[str], str]:
        allowed: list[str] = []
        for route_method, pattern, handler, kind in self._routes:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            if route_method == method.upper():
                return handler, match, kind
            allowed.append(route_method)
        if allowed:
            raise _Refused(405, "Method not allowed", {"Allow": ", ".join(allowed)})
        raise HttpError(404, "Not found")
