"""Logs and metrics of the Lambda handlers: Powertools Logger (structured JSON) and CloudWatch EMF metrics.

The engine counts through the ``Metrics`` protocol with the same names as the local server's Prometheus
metrics (``shared/metrics/base.py``). Here the counts of one invocation are summed in memory and written
at its end as one EMF document per app (dimension ``app_id``, namespace ``sockless``): a broadcast to a
thousand sockets is one ``ws_messages_sent`` value of 1000, not a thousand log lines. CloudWatch turns
the documents into metrics; nothing is called over the network.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from shared.metrics.base import CounterName, GaugeName

NAMESPACE = "sockless"

# The shared code logs to "sockless.*" loggers; they propagate to this one, which writes JSON lines
# with the invocation's context (request id, function name, cold start).
logger = Logger(service="sockless")

R = TypeVar("R")


class EmfMetrics:
    """The ``Metrics`` protocol for Lambda: per-invocation sums flushed as EMF."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self._values: dict[tuple[str, str], float] = defaultdict(float)

    def count(self, name: CounterName, app_id: str, amount: float = 1.0) -> None:
        self._values[(name, app_id)] += amount

    def gauge(self, name: GaugeName, app_id: str, delta: float) -> None:
        # A connection count lives in the store, not in a container: the deltas' sum is the net change.
        self._values[(name, app_id)] += delta

    def refused(self, app_id: str, kind: str, code: int | None) -> None:
        # One EMF metric per kind and code (``refused_rest_401``): the document's only dimension is the app.
        self._values[(f"refused_{kind}_{'none' if code is None else code}", app_id)] += 1

    def flush(self) -> None:
        """Write what this invocation counted (nothing when it counted nothing)."""
        if not self._values:
            return
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        values, self._values = self._values, defaultdict(float)
        by_app: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (name, app_id), value in values.items():
            by_app[app_id].append((name, value))
        for app_id, metrics in by_app.items():
            emf = EphemeralMetrics(namespace=self.namespace)
            emf.add_dimension("app_id", app_id)
            for name, value in metrics:
                unit = MetricUnit.Bytes if "_bytes_" in name else MetricUnit.Count
                emf.add_metric(name=name, unit=unit, value=value)
            emf.flush_metrics()


def entry_point(flush: Callable[[], None]) -> Callable[[Callable[[Any, Any], R]], Callable[[Any, Any], R]]:
    """Decorate a handler: log context injected, and ``flush`` (the container's metrics) called after it,
    whether it returned or raised."""

    def decorate(handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> R:
            try:
                return handler(event, context)
            finally:
                flush()

        injected: Callable[[Any, Any], R] = logger.inject_lambda_context(wrapper)
        return injected

    return decorate
