"""``MemoryRateLimiter``: fixed windows in a dict, swept as they expire so memory stays bounded."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._clock = clock
        self._next_sweep = 0.0

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        entry = self._windows.get(key)
        if entry is None or entry[0] <= now:
            self._windows[key] = (now + window_seconds, 1)
            return True
        if entry[1] >= limit:
            return False
        self._windows[key] = (entry[0], entry[1] + 1)
        return True

    def _sweep(self, now: float) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._next_sweep = now + 10.0

    async def close(self) -> None:
        self._windows.clear()

    async def check_health(self) -> bool:
        return True
