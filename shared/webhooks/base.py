"""The ``WebhookQueue`` protocol and the job it carries.

The engine pushes one job per Pusher webhook event; a worker (in-process locally, the ``webhooks``
Lambda on AWS) batches, signs and delivers them, so a slow receiver never slows a client.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.types import AppId


@dataclass(frozen=True, slots=True)
class WebhookJob:
    app_id: AppId
    event: dict[str, Any]  # one Pusher webhook event: {"name": ..., "channel": ..., ...}
    time_ms: int
    attempts: int = 0
    first_attempt_ms: int | None = None
    target: int | None = None  # index of the app's webhook target, once a job is split per target
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "event": self.event,
            "time_ms": self.time_ms,
            "attempts": self.attempts,
            "first_attempt_ms": self.first_attempt_ms,
            "target": self.target,
            "id": self.id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookJob:
        return cls(
            app_id=AppId(str(data["app_id"])),
            event=dict(data["event"]),
            time_ms=int(data["time_ms"]),
            attempts=int(data.get("attempts", 0)),
            first_attempt_ms=data.get("first_attempt_ms"),
            target=data.get("target"),
            id=str(data.get("id") or uuid.uuid4().hex),
        )


class WebhookQueue(Protocol):
    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        """Enqueue a job, visible to ``receive`` after ``delay_seconds``. Never blocks on a receiver."""

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        """Up to ``max_items`` ready jobs, waiting at most ``wait_seconds`` for the first one."""

    def pending(self) -> int:
        """Jobs waiting (ready or delayed); best effort for remote queues."""

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...
