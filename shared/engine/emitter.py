"""Turns store results into webhook jobs, only for the event types some target of the app wants."""

from __future__ import annotations

import time
from typing import Any

from shared.settings import AppConfig, WebhookEventType
from shared.webhooks.base import WebhookJob, WebhookQueue

# Pusher delays these so a quick reconnect does not produce vacated/occupied noise (PROTOCOL.md §4.1).
DELAYED_EVENTS: frozenset[str] = frozenset({"channel_vacated", "member_removed"})


def wants(app: AppConfig, name: WebhookEventType, channel: str | None) -> bool:
    return any(name in hook.event_types and hook.filter.matches(channel) for hook in app.webhooks)


class WebhookEmitter:
    def __init__(self, queue: WebhookQueue, delay_seconds: float) -> None:
        self.queue = queue
        self.delay_seconds = delay_seconds

    async def emit(self, app: AppConfig, name: WebhookEventType, channel: str, **fields: Any) -> None:
        if not app.webhooks or not wants(app, name, channel):
            return
        event: dict[str, Any] = {"name": name, "channel": channel}
        event.update({k: v for k, v in fields.items() if v is not None})
        job = WebhookJob(app_id=app.id, event=event, time_ms=int(time.time() * 1000))
        await self.queue.push(job, self.delay_seconds if name in DELAYED_EVENTS else 0.0)
