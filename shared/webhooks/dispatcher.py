"""Delivers queued webhook jobs: re-check delayed events, batch per app and target, sign, deliver, retry.

Isolation is the point of this module: every delivery runs in its own task under a global semaphore
(``webhooks.concurrency``) and a per-target share of it, each attempt is bounded by the request timeout,
and a target whose share is used up gets its new jobs pushed back to the queue for a moment instead of
taking slots from the others. A receiver that is down, slow or answering 500 only delays itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from shared.apps.base import AppStore
from shared.auth.signatures import webhook_signature
from shared.errors import StoreUnavailable
from shared.metrics.base import Metrics, NullMetrics
from shared.ratelog import RateLimitedLog
from shared.settings import AppConfig, WebhookConfig, WebhookSettings
from shared.store.base import ChannelStore
from shared.types import AppId, ChannelName, UserId
from shared.webhooks.base import (
    DELAYED_EVENTS,
    MAX_DELAY_SECONDS,
    RETURNING_EVENTS,
    Outcome,
    TargetPicker,
    WebhookJob,
    WebhookQueue,
)

log = logging.getLogger("sockless.webhooks")
attempt_log = RateLimitedLog(log)
step_log = RateLimitedLog(log)

# A target with all its slots busy gets new jobs back after this long (jittered), not counted as attempts.
BUSY_DELAY_SECONDS = 0.25

TargetKey = tuple[AppId, int]


def build_body(events: Sequence[dict[str, Any]], time_ms: int) -> bytes:
    """The exact bytes that are signed and sent: Pusher's ``{"time_ms", "events"}``. ``time_ms`` is the
    send time, so a retried webhook still passes the SDKs' 5-minute freshness check."""
    return json.dumps({"time_ms": time_ms, "events": list(events)}, separators=(",", ":")).encode()


def signed_headers(app: AppConfig, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",  # the Node SDK refuses to validate anything else
        "X-Pusher-Key": app.key,
        "X-Pusher-Signature": webhook_signature(app.secret, body),
    }


def hook_wants(hook: WebhookConfig, event: dict[str, Any]) -> bool:
    channel = event.get("channel")
    return event.get("name") in hook.event_types and hook.filter.matches(channel if isinstance(channel, str) else None)


async def state_holds(store: ChannelStore, app_id: AppId, event: dict[str, Any]) -> bool:
    """Whether the channel/member state an event announces is still the current one."""
    name = str(event.get("name"))
    channel = ChannelName(str(event.get("channel")))
    if name in ("channel_occupied", "channel_vacated"):
        occupied = (await store.channel_stats(app_id, channel)).subscription_count > 0
        return occupied == (name == "channel_occupied")
    if name in ("member_added", "member_removed"):
        present = UserId(str(event.get("user_id"))) in await store.members(app_id, channel)
        return present == (name == "member_added")
    return True


def describe(hook: WebhookConfig) -> str:
    """A target for logs, without query strings or credentials a URL may carry."""
    if hook.url is not None:
        parts = urlsplit(hook.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
    target = hook.lambda_target
    return f"lambda:{target.region}:{target.function_name}" if target is not None else "?"


@dataclass
class _Batch:
    """Jobs for one app and target waiting for the batching window to close."""

    app: AppConfig
    hook: WebhookConfig
    jobs: list[WebhookJob] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class WebhookDispatcher:
    def __init__(
        self,
        *,
        queue: WebhookQueue,
        apps: AppStore,
        store: ChannelStore,
        targets: TargetPicker,
        settings: WebhookSettings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.apps = apps
        self.store = store
        self.targets = targets
        self.settings = settings
        self.metrics = metrics or NullMetrics()
        self._clock = clock
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        # One target may hold at most a quarter of the slots, so one bad receiver cannot starve the rest.
        self.per_target = max(1, settings.concurrency // 4)
        self._max_tasks = settings.concurrency * 2
        self._active: dict[TargetKey, int] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._batches: dict[TargetKey, _Batch] = {}
        self._draining = False

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled. A failing queue is logged and retried, never fatal."""
        while True:
            try:
                await self.step(wait_seconds=1.0)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                # The queue's backend is down (an outage, not a bug): one line per interval, no traceback.
                step_log.warning("dispatcher:queue", "webhook queue unavailable, retrying every 1 s: %s", exc)
                await asyncio.sleep(1.0)
            except Exception as exc:
                step_log.error("dispatcher:bug", "webhook dispatcher step failed; retrying in 1 s", exc_info=exc)
                await asyncio.sleep(1.0)

    async def step(self, wait_seconds: float) -> int:
        """Receive ready jobs and start their deliveries (or add them to their batches)."""
        if len(self._inflight) >= self._max_tasks:
            await asyncio.wait(set(self._inflight), timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
            if len(self._inflight) >= self._max_tasks:
                return 0
        size = self.settings.batch_size if self.settings.batching else self._max_tasks - len(self._inflight)
        jobs = await self.queue.receive(size, wait_seconds)
        await self.dispatch(jobs, immediate=self._draining)
        return len(jobs)

    async def dispatch(self, jobs: Sequence[WebhookJob], immediate: bool = False) -> list[asyncio.Task[None]]:
        """Group jobs per app and target and start their deliveries: one request per job without batching;
        with batching, a batch per app and target that leaves when it holds ``batch_size`` events or
        ``batch_duration_ms`` after its first one (at once when ``immediate``: Lambda, shutdown).
        Returns the tasks started now (the Lambda worker awaits them)."""
        groups: dict[TargetKey, list[WebhookJob]] = {}
        for job in jobs:
            groups.setdefault((job.app_id, job.target), []).append(job)
        started: list[asyncio.Task[None]] = []
        size = self.settings.batch_size if self.settings.batching else 1
        for key, group in groups.items():
            app = await self.apps.by_id(key[0])
            if app is None or not 0 <= key[1] < len(app.webhooks):
                log.info("dropping %d webhook job(s): app %s or its target %d is gone", len(group), *key)
                await self.queue.ack(group)
                continue
            hook = app.webhooks[key[1]]
            if size == 1 or immediate:
                started += [self._start(key, app, hook, group[i : i + size]) for i in range(0, len(group), size)]
                continue
            for job in group:
                batch = self._batches.setdefault(key, _Batch(app, hook))
                batch.jobs.append(job)
                if len(batch.jobs) >= size:
                    started.append(self._flush(key))
                elif batch.timer is None:
                    batch.timer = asyncio.get_running_loop().call_later(
                        self.settings.batch_duration_ms / 1000, self._flush, key
                    )
        return started

    def _flush(self, key: TargetKey) -> asyncio.Task[None]:
        batch = self._batches.pop(key)
        if batch.timer is not None:
            batch.timer.cancel()
        return self._start(key, batch.app, batch.hook, batch.jobs)

    def _start(self, key: TargetKey, app: AppConfig, hook: WebhookConfig, jobs: list[WebhookJob]) -> asyncio.Task[None]:
        """One task per request. A target already using its share of the slots gets the jobs back in the
        queue for a moment (not an attempt), so its backlog never occupies the slots of the others."""
        if self._active.get(key, 0) >= self.per_target:
            task = asyncio.create_task(self._defer(app, hook, jobs))
        else:
            self._active[key] = self._active.get(key, 0) + 1
            task = asyncio.create_task(self._run_delivery(key, app, hook, jobs))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def process(self, jobs: Sequence[WebhookJob]) -> None:
        """Deliver ``jobs`` now and wait until each is delivered, re-queued for a retry, or given up."""
        tasks = await self.dispatch(jobs, immediate=True)
        if tasks:
            await asyncio.wait(tasks)

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown: send open batches now and keep delivering, delayed jobs included, until the
        queue is empty or ``timeout`` seconds have passed; then cancel what is still in flight."""
        self._draining = True
        for key in list(self._batches):
            self._flush(key)
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if not self._inflight and await self.queue.pending() == 0:
                    return
                await self.step(wait_seconds=min(remaining, 0.05))
            left = await self.queue.pending()
        except Exception:
            # A queue backend failing at shutdown must not stop the server from closing: what is queued in a
            # durable queue stays there for the next worker.
            log.exception("shutdown: webhook queue unavailable while draining")
            left = 0
        for key in list(self._batches):
            self._flush(key)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight))
        if left:
            log.warning("shutdown: %d webhook job(s) still queued after %.1f s", left, timeout)

    # -- one delivery ---------------------------------------------------------------------------------

    async def _run_delivery(self, key: TargetKey, app: AppConfig, hook: WebhookConfig, jobs: list[WebhookJob]) -> None:
        try:
            async with self._semaphore:
                await self._deliver(app, key[1], hook, jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not acked: if even the retry push failed, the queue hands the jobs out again later.
            log.exception("webhook delivery to %s failed unexpectedly", describe(hook))
            try:
                outcome = Outcome(ok=False, retryable=True, detail=repr(exc)[:300])
                await self._push_back(app, hook, jobs, outcome, count_attempt=True)
            except Exception:
                log.exception("could not re-queue %d webhook job(s); the queue will hand them out again", len(jobs))
        finally:
            self._active[key] -= 1
            if not self._active[key]:
                del self._active[key]

    async def _relevant(self, app: AppConfig, hook: WebhookConfig, job: WebhookJob) -> bool:
        """Delayed events are dropped when the state came back; on retries, occupied/member_added are
        dropped too when the state already changed again, so a late retry never contradicts the present."""
        if not hook_wants(hook, job.event):  # the app's config changed since the job was queued
            return False
        name = job.event.get("name")
        if name in DELAYED_EVENTS or (name in RETURNING_EVENTS and job.attempts > 0):
            return await state_holds(self.store, app.id, job.event)
        return True

    async def _deliver(self, app: AppConfig, index: int, hook: WebhookConfig, jobs: list[WebhookJob]) -> None:
        live: list[WebhookJob] = []
        stale: list[WebhookJob] = []
        for job in jobs:
            (live if await self._relevant(app, hook, job) else stale).append(job)
        if stale:
            await self.queue.ack(stale)
        if not live:
            return
        body = build_body([job.event for job in live], int(self._clock() * 1000))
        target = self.targets.for_hook(hook)
        if target is None:
            outcome = Outcome(ok=False, retryable=False, detail="no driver for this kind of webhook target")
        else:
            outcome = await target.deliver(hook, body, signed_headers(app, body), self.settings.request_timeout_seconds)
        if outcome.ok:
            self.metrics.count("webhooks_delivered", app.id)
            await self.queue.ack(live)
            return
        self.metrics.count("webhooks_failed", app.id)
        # A receiver that is down fails every attempt: one line per target per interval, with the count.
        attempt_log.warning(
            f"webhook:{app.id}:{index}",
            "webhook to %s (app %s, target %d) failed: %s; %d event(s), attempt %d",
            describe(hook),
            app.id,
            index,
            outcome.detail,
            len(live),
            live[0].attempts + 1,
        )
        await self._push_back(app, hook, live, outcome, count_attempt=True)

    async def _defer(self, app: AppConfig, hook: WebhookConfig, jobs: list[WebhookJob]) -> None:
        try:
            await self._push_back(app, hook, jobs, Outcome(ok=False, retryable=True, detail="target busy"))
        except Exception:
            log.exception("could not re-queue %d webhook job(s); the queue will hand them out again", len(jobs))

    # -- retries --------------------------------------------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of ``initial * 2**(n-1)``, capped."""
        settings = self.settings
        ceiling = min(settings.retry_max_backoff_seconds, settings.retry_initial_backoff_seconds * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _push_back(
        self,
        app: AppConfig,
        hook: WebhookConfig,
        jobs: Sequence[WebhookJob],
        outcome: Outcome,
        count_attempt: bool = False,
    ) -> None:
        """Re-queue each job with a delay while the retry window lasts; past it (or for a final failure),
        log and count the loss. The originals are acked only after their copies are pushed."""
        now = self._clock()
        lost: list[WebhookJob] = []
        for job in jobs:
            first = job.first_attempt_ms if job.first_attempt_ms is not None else int(now * 1000)
            attempts = job.attempts + 1 if count_attempt else job.attempts
            remaining = first / 1000 + self.settings.retry_max_elapsed_seconds - now
            if not outcome.retryable or remaining <= 0:
                lost.append(job)
                continue
            delay = self.backoff(attempts) if count_attempt else BUSY_DELAY_SECONDS * random.uniform(0.5, 1.0)
            copy = replace(job, attempts=attempts, first_attempt_ms=first, receipt=None)
            await self.queue.push(copy, min(delay, remaining, MAX_DELAY_SECONDS))
        if lost:
            self.metrics.count("webhooks_lost", app.id, len(lost))
            log.error(
                "webhook lost: %d event(s) for %s (app %s) after %d attempt(s): %s; events: %s",
                len(lost),
                describe(hook),
                app.id,
                max(job.attempts for job in lost) + (1 if count_attempt else 0),
                outcome.detail,
                ", ".join(sorted({f"{job.event.get('name')}@{job.event.get('channel')}" for job in lost}))[:500],
            )
        await self.queue.ack(jobs)
