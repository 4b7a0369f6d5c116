"""``PrometheusMetrics``: prometheus-client counters and gauges, labelled by app id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.metrics.base import CounterName, GaugeName

_COUNTERS: dict[str, str] = {
    "new_connections": "Connections opened",
    "disconnections": "Connections closed",
    "ws_messages_received": "WebSocket frames received from clients",
    "ws_messages_sent": "WebSocket frames sent to clients",
    "ws_messages_failed": "WebSocket frames that could not be sent (throttling or errors outlasting the retries)",
    "ws_bytes_received": "Bytes received from clients",
    "ws_bytes_sent": "Bytes sent to clients",
    "http_calls": "REST API calls received",
    "http_bytes_received": "REST API request body bytes",
    "webhooks_delivered": "Webhook requests acknowledged by their target",
    "webhooks_failed": "Webhook attempts that failed (and may be retried)",
    "webhooks_lost": "Webhook events given up after the retry window",
    "client_events": "Client events relayed",
    "errors": "Protocol errors sent to clients",
}


class PrometheusMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._counters = {
            name: Counter(f"sockless_{name}", doc, ["app_id"], registry=self.registry)
            for name, doc in _COUNTERS.items()
        }
        self._connections = Gauge("sockless_connected", "Open connections", ["app_id"], registry=self.registry)
        # The labelled children, looked up once per (metric, app): ``labels()`` costs a lock and a tuple build,
        # and the engine counts several times per frame.
        self._children: dict[str, dict[str, Counter]] = {name: {} for name in _COUNTERS}
        self._gauges: dict[str, Gauge] = {}
        self._refusals = Counter(
            "sockless_refusals",
            "Requests, handshakes and frames refused, by where (kind) and the code or HTTP status answered",
            ["app_id", "kind", "code"],
            registry=self.registry,
        )

    def count(self, name: CounterName, app_id: str, amount: float = 1.0) -> None:
        children = self._children[name]
        child = children.get(app_id)
        if child is None:
            child = children[app_id] = self._counters[name].labels(app_id)
        child.inc(amount)

    def gauge(self, name: GaugeName, app_id: str, delta: float) -> None:
        child = self._gauges.get(app_id)
        if child is None:
            child = self._gauges[app_id] = self._connections.labels(app_id)
        child.inc(delta)

    def refused(self, app_id: str, kind: str, code: int | None) -> None:
        self._refusals.labels(app_id, kind, "none" if code is None else str(code)).inc()
