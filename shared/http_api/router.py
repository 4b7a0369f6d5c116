"""Routes signed REST requests to their handlers and maps ``HttpError`` to a JSON error response."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shared.auth import verify_request
from shared.errors import HttpError
from shared.http_api import events
from shared.http_api.base import HttpRequest, HttpResponse
from shared.settings import AppConfig, RateLimit

if TYPE_CHECKING:
    from shared.engine.core import Engine
    from shared.limits.base import RateLimiter

Handler = Callable[["Engine", AppConfig, HttpRequest, "re.Match[str]"], Awaitable[Any]]

_APP_PATH = re.compile(r"/apps/(?P<app_id>[^/]+)(?P<rest>/.*)")
WRITE, READ = "write", "read"


async def _events(engine: Engine, app: AppConfig, request: HttpRequest, _m: re.Match[str]) -> Any:
    return await events.trigger(engine, app, request.body)


async def _batch(engine: Engine, app: AppConfig, request: HttpRequest, _m: re.Match[str]) -> Any:
    return await events.trigger_batch(engine, app, request.body)


class RestApi:
    """The REST API. Extra routes register with :meth:`route` (the rest of the API lives beside this)."""

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

    def route(self, method: str, pattern: str, handler: Handler, kind: str) -> None:
        self._routes.append((method, re.compile(pattern), handler, kind))

    async def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return HttpResponse(200, await self._dispatch(request))
        except HttpError as exc:
            return HttpResponse.error(exc.status, exc.message)

    async def _dispatch(self, request: HttpRequest) -> Any:
        if self.per_ip is not None and not await self.limiter.hit(
            f"http_ip:{request.ip}", self.per_ip.max_requests, self.per_ip.window_seconds
        ):
            raise HttpError(429, "Too many requests from this address")
        m = _APP_PATH.fullmatch(request.path)
        if m is None:
            raise HttpError(404, "Not found")
        handler, match, kind = self._match(request.method, m["rest"])
        if len(request.body) > self.max_body_bytes:
            raise HttpError(413, "Request body too large")
        app = await self.engine.app_by_id(m["app_id"])
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
            raise HttpError(429, "App is over its request rate limit")
        self.engine.metrics.count("http_calls", app.id)
        self.engine.metrics.count("http_bytes_received", app.id, len(request.body))
        return await handler(self.engine, app, request, match)

    def _match(self, method: str, rest: str) -> tuple[Handler, re.Match[str], str]:
        allowed = False
        for route_method, pattern, handler, kind in self._routes:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            if route_method == method.upper():
                return handler, match, kind
            allowed = True
        raise HttpError(405 if allowed else 404, "Method not allowed" if allowed else "Not found")
