"""The emulator's console: the same page, fed by the Lambda "containers" of the emulator and its invocations."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from local_server.debug.views import Backend, DebugConsole
from shared.debug import DebugTap
from shared.debug.state import app_state
from shared.http_api.base import HttpRequest, HttpResponse
from shared.settings import AppConfig, Settings

if TYPE_CHECKING:
    from cost.meter import Meter
    from local_server.emulator.http_api import HttpApi
    from local_server.emulator.lambdas import LambdaService


class RunningCost:
    """What the emulated stack would bill a month if the traffic of the last minute went on: the usage
    lines at the rate the emulator's meter counted them over the window (since the start when younger),
    connection-minutes for the connections open now. Standing lines (alarms, dashboard, secrets) are not
    traffic: ``python -m cost`` has them (docs/cost.md)."""

    WINDOW_SECONDS = 60.0

    def __init__(
        self, meter: Meter, open_connections: Callable[[], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.meter = meter
        self.open_connections = open_connections
        self.clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def __call__(self) -> dict[str, Any]:
        from cost.meter import MONTH_S
        from cost.prices import PRICES

        now = self.clock()
        usd = self.meter.usd()
        usd.pop("ws_connection_minute", None)  # closed connections: the open ones are priced below
        self._samples.append((now, usd))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW_SECONDS:
            self._samples.popleft()
        since, first = self._samples[0]
        if now - since < 1.0:  # too short a window: the rate since the meter started
            since, first = self.meter.started, {}
        elapsed = max(now - since, 1.0)
        lines = {name: (value - first.get(name, 0.0)) * MONTH_S / elapsed for name, value in usd.items()}
        connections = self.open_connections()
        lines["ws_connection_minute"] = connections * MONTH_S / 60 * PRICES["ws_connection_minute"].usd
        return {
            "usd_per_month": round(sum(lines.values()), 2),
            "lines": {name: round(value, 4) for name, value in sorted(lines.items()) if value},
            "window_seconds": round(elapsed, 1),
            "open_connections": connections,
        }


def emulator_console(
    settings: Settings,
    lambdas: LambdaService,
    http: HttpApi,
    table_name: str,
    region: str,
    moto_url: str,
    cost: RunningCost | None = None,
) -> DebugConsole:
    """The emulator's console: the same page, fed by the engines of its Lambda "containers" (worker threads
    of this process, which attach to the installed tap when they build their services) and by every
    invocation with its handler and duration. The Event Creator goes through the ``http_api`` function,
    and the channel list is read from the DynamoDB table (in moto) the functions use. Add the routes with
    ``Edge.app(console.add_routes)``."""
    from local_server.emulator import events
    from shared.debug import install
    from shared.limits.memory import MemoryRateLimiter
    from shared.store.dynamodb import DynamoDBChannelStore

    tap = DebugTap()
    install(tap)
    lambdas.observer = tap.lambda_invocation
    store = DynamoDBChannelStore(table_name, region=region, endpoint_url=moto_url)

    async def rest(request: HttpRequest) -> HttpResponse:
        event = events.http_v2(
            method=request.method,
            raw_path=request.path,
            raw_query=urlencode(request.query),
            headers=dict(request.headers),
            body=request.body,
            source_ip=request.ip or "127.0.0.1",
            api_id=http.api_id,
            stage=http.stage,
            domain_name=settings.host,
        )
        if http.function is None:
            return HttpResponse(404, {"error": "the template has no HTTP API function"})
        result = await lambdas.invoke(http.function, event)
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
        cost=cost,
    )
    return DebugConsole(tap, backend, host=settings.host, admin_token=settings.admin_token)
