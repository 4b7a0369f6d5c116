"""The debug console's side of the core: a bounded event tap the engine reports to, and its helpers.

Nothing here runs unless the console is on (``debug_console``): ``build_services(tap=...)`` then makes the
engine report to the tap (its observer) and count frames sent for it; otherwise the engine's observer is
the null one.
"""

from __future__ import annotations

from shared.debug.tap import DebugTap, TapFeed, TapMetrics

__all__ = ["DebugTap", "TapFeed", "TapMetrics", "install", "installed"]

_installed: DebugTap | None = None


def install(tap: DebugTap | None) -> None:
    """The process-wide tap that services built later in this process report to (the emulator's Lambda
    "containers" build their services on first invocation, long after the console was set up)."""
    global _installed
    _installed = tap


def installed() -> DebugTap | None:
    """The tap set by :func:`install`; ``None`` on AWS and whenever no console runs in this process."""
    return _installed
