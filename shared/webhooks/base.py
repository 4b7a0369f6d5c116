"""The ``WebhookQueue`` protocol and the job it carries; the ``WebhookTarget`` contract and delivery outcomes.

The engine pushes one job per Pusher webhook event and per webhook target of the app; a worker (in-process
on the local server, the ``webhooks`` Lambda on AWS) batches, signs and delivers them, so a receiver that
is slow or down never slows a client.

Delivery semantics (the contract every queue driver and the dispatcher share):

- **At least once.** ``receive`` hides the jobs it returns for the queue's *visibility timeout*; ``ack``
  deletes them for good. A job the worker never acks (crash, lost Lambda) becomes visible again after
  the timeout and is delivered again, so receivers may see a duplicate, never a silent loss. SQS does
  exactly this (``ReceiveMessage`` + ``DeleteMessage``); Redis can with a sorted set of in-flight ids.
- **Retries are new pushes.** When a delivery fails with a retryable outcome, the dispatcher pushes a
  copy of the job with ``attempts + 1`` and a delay (exponential backoff with jitter), then acks the
  original. A queue therefore never needs per-message retry state, and the delay is the only timer
  it must support: at most ``MAX_DELAY_SECONDS`` (SQS ``DelaySeconds`` is 0-900 on standard queues).
- **The retry window** starts at the first delivery attempt (``first_attempt_ms``) and lasts
  ``webhooks.retry_max_elapsed_seconds`` (5 minutes, like Pusher); past it the job is logged and
  counted as lost (metric ``webhooks_lost``), and acked.
- **Delayed events** (``channel_vacated``, ``member_removed``) are pushed with ``delay_seconds`` (3 s)
  and re-checked against the store when they come due: dropped if the channel is occupied again or
  the member is back.
- Jobs travel as JSON (``to_dict``/``from_dict``); ``receipt`` is the driver's own handle for ``ack``
  (an SQS receipt handle) and is never serialized.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.settings import WebhookConfig
from shared.types import AppId

# Pusher delays these so a quick reconnect produces no vacated/removed noise (docs/sources.md#webhooks).
DELAYED_EVENTS: frozenset[str] = frozenset({"channel_vacated", "member_removed"})
# The events a delayed one cancels when the state comes back within the delay ("neither is sent").
RETURNING_EVENTS: dict[str, str] = {"channel_occupied": "channel_vacated", "member_added": "member_removed"}
# SQS standard queues accept a per-message DelaySeconds of at most 900.
MAX_DELAY_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """One webhook event for one target of one app."""

    app_id: AppId
    event: dict[str, Any]  # one Pusher webhook event: {"name": ..., "channel": ..., ...}
    target: int  # index of the target in the app's ``webhooks`` list
    time_ms: int  # when the engine emitted the event
    attempts: int = 0  # failed delivery attempts so far
    first_attempt_ms: int | None = None  # start of the retry window
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    receipt: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "event": self.event,
            "target": self.target,
            "time_ms": self.time_ms,
            "attempts": self.attempts,
            "first_attempt_ms": self.first_attempt_ms,
            "id": self.id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], receipt: str | None = None) -> WebhookJob:
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed job."""
        first = data.get("first_attempt_ms")
        return cls(
            app_id=AppId(str(data["app_id"])),
            event=dict(data["event"]),
            target=int(data["target"]),
            time_ms=int(data["time_ms"]),
            attempts=int(data.get("attempts", 0)),
            first_attempt_ms=int(first) if first is not None else None,
            id=str(data.get("id") or uuid.uuid4().hex),
            receipt=receipt,
        )


class WebhookQueue(Protocol):
    """Where webhook jobs wait between the engine and the dispatcher (memory, Redis, SQS)."""

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        """Enqueue ``job``, visible to ``receive`` after ``delay_seconds`` (0 to ``MAX_DELAY_SECONDS``;
        larger values are clamped). Returns once the job is stored; never waits for a receiver."""

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        """Up to ``max_items`` visible jobs, waiting at most ``wait_seconds`` for the first one (long
        polling). The jobs returned stay hidden for the visibility timeout until ``ack``ed; order is
        best effort."""

    async def ack(self, jobs: Sequence[WebhookJob]) -> None:
        """Delete received jobs for good (delivered, retried as a new push, or given up). Idempotent:
        acking an unknown or already acked job does nothing."""

    async def pending(self) -> int:
        """Jobs not yet acked (visible, delayed or in flight); approximate for remote queues."""

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...


# -- targets ---------------------------------------------------------------------------------------------

# Besides 5xx, the statuses that mean "try again later" (Sockudo's list, docs/sources.md#webhooks).
RETRY_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt achieved: ``ok``, or failed and worth retrying (or not)."""

    ok: bool
    retryable: bool
    detail: str = ""


def classify(status: int) -> Outcome:
    """Any 2xx acknowledges (Pusher's rule); 5xx and ``RETRY_STATUSES`` are retried; the rest (3xx
    included: a webhook is never redirected, its signature covers one exact body) are final."""
    if 200 <= status < 300:
        return Outcome(ok=True, retryable=False, detail=f"HTTP {status}")
    return Outcome(ok=False, retryable=status >= 500 or status in RETRY_STATUSES, detail=f"HTTP {status}")


class WebhookTarget(Protocol):
    """Where a signed webhook body goes: an HTTP URL (``http_target.py``) or an AWS Lambda function
    (``lambda_target.py``)."""

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        """Deliver one signed body to ``hook`` within ``timeout`` seconds. Never raises: network errors and
        timeouts are retryable outcomes, so a broken receiver can only cost its own retries."""


class TargetPicker(Protocol):
    """What the dispatcher delivers through (``targets.create_targets`` builds the real one)."""

    def for_hook(self, hook: WebhookConfig) -> WebhookTarget | None:
        """The target for a webhook config; ``None`` when this build has none for its kind (a final failure)."""
        ...
