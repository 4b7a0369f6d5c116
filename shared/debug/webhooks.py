"""Webhook deliveries on the console, observed from outside the dispatcher: its targets are wrapped."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from shared.apps.base import AppStore
from shared.debug.tap import DebugTap
from shared.settings import WebhookConfig
from shared.webhooks.base import Outcome, TargetPicker, WebhookTarget
from shared.webhooks.dispatcher import describe


class _TappedTarget:
    def __init__(self, inner: WebhookTarget, tap: DebugTap, apps: AppStore) -> None:
        self.inner = inner
        self.tap = tap
        self.apps = apps

    async def deliver(self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        started = time.monotonic()
        outcome = await self.inner.deliver(hook, body, headers, timeout)
        if self.tap.active:
            await self._report(hook, body, headers, outcome, (time.monotonic() - started) * 1000)
        return outcome

    async def _report(
        self, hook: WebhookConfig, body: bytes, headers: Mapping[str, str], outcome: Outcome, ms: float
    ) -> None:
        # The signed request names its app only by key; the signature header itself is never reported.
        app = await self.apps.by_key(headers.get("X-Pusher-Key", ""))
        if app is None:
            return
        try:
            events: list[dict[str, Any]] = json.loads(body).get("events", [])
        except (ValueError, AttributeError):
            events = []
        self.tap.webhook(app.id, describe(hook), events, outcome.ok, outcome.detail, ms)


class TappedTargets:
    """The same targets, each delivery reported to the tap with its outcome and duration."""

    def __init__(self, inner: TargetPicker, tap: DebugTap, apps: AppStore) -> None:
        self.inner = inner
        self.tap = tap
        self.apps = apps

    def for_hook(self, hook: WebhookConfig) -> WebhookTarget | None:
        target = self.inner.for_hook(hook)
        return None if target is None else _TappedTarget(target, self.tap, self.apps)


def tap_targets(targets: TargetPicker, tap: DebugTap | None, apps: AppStore) -> TargetPicker:
    """``targets`` unchanged when there is no tap (the console is off)."""
    return targets if tap is None else TappedTargets(targets, tap, apps)
