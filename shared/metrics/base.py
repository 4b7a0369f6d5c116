"""The ``Metrics`` protocol and the metric names every driver uses (Sockudo's, with a sockless prefix)."""

from __future__ import annotations

from typing import Literal, Protocol

CounterName = Literal[
    "new_connections",
    "disconnections",
    "ws_messages_received",
    "ws_messages_sent",
    "ws_messages_failed",
    "ws_bytes_received",
    "ws_bytes_sent",
    "http_calls",
    "http_bytes_received",
    "webhooks_delivered",
    "webhooks_failed",
    "webhooks_lost",
    "client_events",
    "errors",
]
GaugeName = Literal["connections"]


class Metrics(Protocol):
    def count(self, name: CounterName, app_id: str, amount: float = 1.0) -> None: ...

    def gauge(self, name: GaugeName, app_id: str, delta: float) -> None: ...

    def refused(self, app_id: str, kind: str, code: int | None) -> None:
        """One refusal (shared/refusals.py): ``kind`` is where (websocket, frame, rest, http), ``code`` the
        Pusher code or HTTP status it was answered with (``None``: a ``pusher:error`` without a code)."""
        ...


class NullMetrics:
    """For tests and tools that do not export metrics."""

    def count(self, name: CounterName, app_id: str, amount: float = 1.0) -> None:
        return None

    def gauge(self, name: GaugeName, app_id: str, delta: float) -> None:
        return None

    def refused(self, app_id: str, kind: str, code: int | None) -> None:
        return None
