"""Log lines an outsider cannot flood: one line per kind per interval, carrying the count of what was held back.

Anything a client can trigger at will (a malformed request, a bad signature, a refused subscription) and
anything that repeats while a backend is down (a failed health check, a webhook receiver that answers 500)
goes through a :class:`RateLimitedLog`. The first occurrence of a kind is logged at once; further ones within
``interval`` seconds are counted, and the next line of that kind says how many were held back. Kinds are
chosen by the code (``"refused:rest:401"``), never taken from the request, so the table stays small.

Tracebacks are for bugs: callers pass ``exc_info`` only for exceptions they did not expect.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

DEFAULT_INTERVAL_SECONDS = 10.0
MAX_KINDS = 1024  # a bound even if a caller builds kinds from something unbounded by mistake
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\]")


def clean(value: object, limit: int = 200) -> str:
    """A value as it may appear in a log line: no control characters (no forged lines), no quotes, cut."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= limit else text[:limit] + "…"


class RateLimitedLog:
    """At most one line per kind per ``interval``; the next line after a quiet period reports the count."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}  # kind -> when its last line was written
        self._held: dict[str, int] = {}  # kind -> lines held back since then
        self.held_total = 0

    def log(self, level: int, kind: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Write ``msg % args`` unless a line of ``kind`` was written less than ``interval`` ago (then count
        it). Returns whether the line was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            self.held_total += 1
            return False
        if last is None and len(self._last) >= MAX_KINDS:
            self._forget_oldest()
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            msg = f"{msg} (+%d similar in the last %.0f s)"
            args = (*args, held, now - last if last is not None else self.interval)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def info(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, kind, msg, *args)

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, kind, msg, *args)

    def error(self, kind: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, kind, msg, *args, exc_info=exc_info)

    def _forget_oldest(self) -> None:
        oldest = min(self._last, key=self._last.__getitem__)
        del self._last[oldest]
        self._held.pop(oldest, None)
