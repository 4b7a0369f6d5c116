"""The ``RateLimiter`` protocol: fixed-window counters shared by whoever holds the same store."""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        """Count one hit on ``key``; ``False`` when the window already holds ``limit`` hits (not counted).

        ``hit(key, 1, 0)`` is a probe: ``False`` iff a window is open on ``key``; it opens none and leaves
        nothing behind (the webhook debounce reads the markers of pending departures this way).
        """

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...
