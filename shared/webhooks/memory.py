"""``MemoryWebhookQueue``: a heap ordered by the time each job becomes visible."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

from shared.webhooks.base import WebhookJob


class MemoryWebhookQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._heap: list[tuple[float, int, WebhookJob]] = []
        self._seq = itertools.count()
        self._clock = clock
        self._changed = asyncio.Event()

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        heapq.heappush(self._heap, (self._clock() + delay_seconds, next(self._seq), job))
        self._changed.set()

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        deadline = self._clock() + wait_seconds
        while True:
            now = self._clock()
            ready: list[WebhookJob] = []
            while self._heap and self._heap[0][0] <= now and len(ready) < max_items:
                ready.append(heapq.heappop(self._heap)[2])
            if ready or now >= deadline:
                return ready
            wake = min(deadline, self._heap[0][0]) if self._heap else deadline
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(wake - now, 0.001))

    def pending(self) -> int:
        return len(self._heap)

    async def close(self) -> None:
        self._changed.set()

    async def check_health(self) -> bool:
        return True
