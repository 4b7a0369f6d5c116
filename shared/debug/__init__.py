"""The debug console's side of the core: a bounded event tap the engine reports to, and its helpers.

Nothing here runs unless the console is on (``debug_console``): the engine's ``tap`` is ``None`` otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.debug.tap import DebugTap, Subscription, TapMetrics

if TYPE_CHECKING:
    from shared.engine.core import Engine

__all__ = ["DebugTap", "Subscription", "TapMetrics", "attach", "install", "installed"]

_installed: DebugTap | None = None


def attach(engine: Engine, tap: DebugTap) -> None:
    """Make ``engine`` report to ``tap`` (idempotent): its events, and its sent frames for messages/s."""
    if engine.tap is tap:
        return
    engine.tap = tap
    engine.metrics = TapMetrics(engine.metrics, tap)


def install(tap: DebugTap | None) -> None:
    """The process-wide tap that engines built later in this process attach to (the emulator's Lambda
    "containers" build their engines on first invocation, long after the console was set up)."""
    global _installed
    _installed = tap


def installed() -> DebugTap | None:
    """The tap set by :func:`install`; ``None`` on AWS and whenever no console runs in this process."""
    return _installed
