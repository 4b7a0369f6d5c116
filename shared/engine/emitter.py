"""Turns store results into webhook jobs: one per event and per target that wants it, delayed where Pusher delays.

Pusher's debounce (docs/sources.md#webhooks): ``channel_vacated`` and ``member_removed`` wait 3 s and are dropped
if the state came back; and "if a user disconnects and then reconnects within 3 seconds, neither event
will be delivered". The dispatcher does the first half when the delayed job comes due; this module does
the second: a departure leaves a marker for the delay (in the shared ``RateLimiter``, so every process
sees it), and the matching arrival is not emitted while the marker lives.
"""

from __future__ import annotations

import time
from typing import Any

from shared.limits.base import RateLimiter
from shared.settings import AppConfig, WebhookEventType
from shared.webhooks.base import DELAYED_EVENTS, RETURNING_EVENTS, WebhookJob, WebhookQueue

# ``hit(key, 1, 0)`` only tells whether a window is open; it never opens one (RateLimiter contract).
_PROBE_WINDOW_SECONDS = 0.0
_UNLIMITED = 2**31


def wants(app: AppConfig, name: WebhookEventType, channel: str | None) -> bool:
    return any(name in hook.event_types and hook.filter.matches(channel) for hook in app.webhooks)


def _marker(kind: str, app: AppConfig, departure: str, channel: str, user_id: Any) -> str:
    return f"webhook_{kind}:{departure}:{app.id}:{channel}:{user_id if user_id is not None else ''}"


class WebhookEmitter:
    def __init__(self, queue: WebhookQueue, delay_seconds: float, limiter: RateLimiter | None = None) -> None:
        self.queue = queue
        self.delay_seconds = delay_seconds
        self.limiter = limiter

    async def emit(self, app: AppConfig, name: WebhookEventType, channel: str, **fields: Any) -> None:
        targets = [
            index
            for index, hook in enumerate(app.webhooks)
            if name in hook.event_types and hook.filter.matches(channel)
        ]
        if not targets:
            return
        delay = self.delay_seconds if name in DELAYED_EVENTS else 0.0
        if self.limiter is not None and self.delay_seconds > 0 and not await self._debounce(app, name, channel, fields):
            return
        event: dict[str, Any] = {"name": name, "channel": channel}
        event.update({k: v for k, v in fields.items() if v is not None})
        now_ms = int(time.time() * 1000)
        for index in targets:
            await self.queue.push(WebhookJob(app_id=app.id, event=event, target=index, time_ms=now_ms), delay)

    async def _debounce(self, app: AppConfig, name: str, channel: str, fields: dict[str, Any]) -> bool:
        """``False`` when the event must not be emitted.

        A departure sets the marker arrivals look for. It is skipped when a departure of the same kind is
        already pending (its own key, so an arrival's probe never hides a departure): the pending one sees
        the current state when it comes due, and a second job would only duplicate it. An arrival while
        the marker lives is suppressed: the pending departure will find the state back and drop itself,
        and the receiver sees neither.
        """
        assert self.limiter is not None
        user_id = fields.get("user_id")
        if name in DELAYED_EVENTS:
            await self.limiter.hit(_marker("pending", app, name, channel, user_id), _UNLIMITED, self.delay_seconds)
            return await self.limiter.hit(_marker("dedupe", app, name, channel, user_id), 1, self.delay_seconds)
        departure = RETURNING_EVENTS.get(name)
        if departure is None:
            return True
        return await self.limiter.hit(_marker("pending", app, departure, channel, user_id), 1, _PROBE_WINDOW_SECONDS)
