"""Delivers queued webhook jobs: re-check delayed events, batch per app, sign, deliver, retry with backoff."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import replace
from typing import Any

from shared.apps.base import AppStore
from shared.auth.signatures import webhook_signature
from shared.engine.emitter import DELAYED_EVENTS
from shared.metrics.base import Metrics, NullMetrics
from shared.settings import AppConfig, WebhookConfig, WebhookSettings
from shared.store.base import ChannelStore
from shared.types import ChannelName, UserId
from shared.webhooks.base import WebhookJob, WebhookQueue
from shared.webhooks.targets import Outcome, Targets

log = logging.getLogger("sockless.webhooks")


async def still_relevant(store: ChannelStore, app: AppConfig, event: dict[str, Any]) -> bool:
    """A delayed ``channel_vacated``/``member_removed`` is dropped when the state came back meanwhile."""
    name = event.get("name")
    if name not in DELAYED_EVENTS:
        return True
    channel = ChannelName(str(event.get("channel")))
    if name == "channel_vacated":
        return (await store.channel_stats(app.id, channel)).subscription_count == 0
    return UserId(str(event.get("user_id"))) not in await store.members(app.id, channel)


def build_body(events: list[dict[str, Any]], time_ms: int) -> bytes:
    return json.dumps({"time_ms": time_ms, "events": events}, separators=(",", ":")).encode()


class WebhookDispatcher:
    def __init__(
        self,
        *,
        queue: WebhookQueue,
        apps: AppStore,
        store: ChannelStore,
        targets: Targets,
        settings: WebhookSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.queue = queue
        self.apps = apps
        self.store = store
        self.targets = targets
        self.settings = settings
        self.metrics = metrics or NullMetrics()
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            await self.step(wait_seconds=1.0)

    async def step(self, wait_seconds: float) -> int:
        """Receive one batch of ready jobs and start delivering them; returns how many were received."""
        size = self.settings.batch_size if self.settings.batching else 100
        jobs = await self.queue.receive(size, wait_seconds)
        if self.settings.batching and jobs:
            await asyncio.sleep(self.settings.batch_duration_ms / 1000)
            jobs += await self.queue.receive(max(size - len(jobs), 0), 0) if len(jobs) < size else []
        groups: dict[tuple[str, int | None], list[WebhookJob]] = {}
        for job in jobs:
            if self.settings.batching:
                groups.setdefault((job.app_id, job.target), []).append(job)
            else:
                groups[(job.id, None)] = [job]
        for group in groups.values():
            task = asyncio.create_task(self._process(group))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(jobs)

    async def drain(self, timeout: float) -> None:
        """Deliver what is queued and ready, within ``timeout`` seconds (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = await self.step(wait_seconds=0)
            if self._inflight:
                await asyncio.wait(set(self._inflight), timeout=max(deadline - time.monotonic(), 0))
            if not received and not self._inflight:
                return

    async def _process(self, jobs: list[WebhookJob]) -> None:
        async with self._semaphore:
            app = await self.apps.by_id(jobs[0].app_id)
            if app is None:
                return
            live = [job for job in jobs if await still_relevant(self.store, app, job.event)]
            if not live:
                return
            for index, hook in enumerate(app.webhooks):
                wanted = [
                    job
                    for job in live
                    if (job.target is None or job.target == index)
                    and job.event.get("name") in hook.event_types
                    and hook.filter.matches(job.event.get("channel"))
                ]
                if wanted:
                    await self._deliver(app, index, hook, wanted)

    async def _deliver(self, app: AppConfig, index: int, hook: WebhookConfig, jobs: list[WebhookJob]) -> None:
        target = self.targets.for_hook(hook)
        body = build_body([job.event for job in jobs], int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-Pusher-Key": app.key,
            "X-Pusher-Signature": webhook_signature(app.secret, body),
        }
        if target is None:
            outcome = Outcome(ok=False, retryable=False, detail="no target driver for this webhook")
        else:
            outcome = await target.deliver(hook, body, headers, self.settings.request_timeout_seconds)
        if outcome.ok:
            self.metrics.count("webhooks_delivered", app.id)
            return
        self.metrics.count("webhooks_failed", app.id)
        now_ms = int(time.time() * 1000)
        for job in jobs:
            first = job.first_attempt_ms or now_ms
            attempts = job.attempts + 1
            backoff = min(
                self.settings.retry_initial_backoff_seconds * 2 ** (attempts - 1),
                self.settings.retry_max_backoff_seconds,
            ) * random.uniform(0.8, 1.2)
            within = (now_ms - first) / 1000 + backoff <= self.settings.retry_max_elapsed_seconds
            if outcome.retryable and within:
                await self.queue.push(replace(job, attempts=attempts, first_attempt_ms=first, target=index), backoff)
            else:
                self.metrics.count("webhooks_lost", app.id)
                log.error(
                    "webhook lost after %d attempts: app=%s event=%s target=%s (%s)",
                    attempts,
                    app.id,
                    job.event.get("name"),
                    hook.url or hook.lambda_target,
                    outcome.detail,
                )
