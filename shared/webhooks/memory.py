"""``MemoryWebhookQueue``: the single-process queue, with the same visibility-timeout semantics as SQS."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from shared.webhooks.base import MAX_DELAY_SECONDS, WebhookJob


class MemoryWebhookQueue:
    """A heap ordered by the time each job becomes visible, plus the jobs received but not acked.

    Jobs live only as long as the process; what is left at shutdown is lost (the dispatcher drains
    the queue on SIGTERM within the grace period).
    """

    def __init__(self, visibility_timeout: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._heap: list[tuple[float, int, WebhookJob]] = []
        self._inflight: dict[str, tuple[float, WebhookJob]] = {}  # receipt -> (visible again at, job)
        self._seq = itertools.count()
        self._clock = clock
        self._changed = asyncio.Event()
        self.visibility_timeout = visibility_timeout

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        delay = min(max(delay_seconds, 0.0), MAX_DELAY_SECONDS)
        heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), job))
        self._changed.set()

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        deadline = self._clock() + wait_seconds
        while True:
            now = self._clock()
            self._expire_inflight(now)
            ready: list[WebhookJob] = []
            while self._heap and self._heap[0][0] <= now and len(ready) < max_items:
                job = heapq.heappop(self._heap)[2]
                receipt = f"{job.id}:{next(self._seq)}"
                self._inflight[receipt] = (now + self.visibility_timeout, job)
                ready.append(replace(job, receipt=receipt))
            if ready or now >= deadline:
                return ready
            wake = deadline
            if self._heap:
                wake = min(wake, self._heap[0][0])
            if self._inflight:
                wake = min(wake, min(until for until, _ in self._inflight.values()))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(wake - now, 0.001))

    def _expire_inflight(self, now: float) -> None:
        expired = [receipt for receipt, (until, _) in self._inflight.items() if until <= now]
        for receipt in expired:
            _, job = self._inflight.pop(receipt)
            heapq.heappush(self._heap, (now, next(self._seq), job))

    async def ack(self, jobs: Sequence[WebhookJob]) -> None:
        for job in jobs:
            if job.receipt is not None:
                self._inflight.pop(job.receipt, None)

    async def pending(self) -> int:
        return len(self._heap) + len(self._inflight)

    async def close(self) -> None:
        self._changed.set()

    async def check_health(self) -> bool:
        return True
