"""``DebugTap``: what the engine does, as JSON events, fanned out to bounded per-subscriber buffers.

The debug console must never cost the server anything it cannot afford. So publishing is synchronous and
never waits: with no subscriber it returns at once, and otherwise each event is serialised (and scrubbed
of secrets) once, then appended to every interested subscriber's buffer. A buffer holds at most
``maxsize`` events; when a browser tab reads slower than events arrive, the oldest are dropped and
counted, and the tab is told how many it missed. Nothing ever queues without bound.

Publishing is thread-safe (the emulator's Lambda "containers" are worker threads with their own loops):
a subscriber is woken on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.metrics.base import CounterName, GaugeName, Metrics

DEFAULT_BUFFER = 1000
MAX_TEXT = 2000  # characters of event data shown; the console is for looking, not for archiving
REDACTED = "[redacted]"
# A hex HMAC-SHA256: channel auth and sign-in signatures, REST auth_signature, X-Pusher-Signature.
_SIGNATURE = re.compile(r"\b[0-9a-fA-F]{64}\b")


def clip(value: Any, limit: int = MAX_TEXT) -> Any:
    """Event data as shown: strings over ``limit`` characters are cut, with the size of what was cut."""
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… (+{len(value) - limit} chars)"


class TapFeed:
    """One console's view of the tap: the events of its apps, at most ``maxsize`` of them waiting."""

    def __init__(self, tap: DebugTap, app_ids: frozenset[str] | None, maxsize: int) -> None:
        self._tap = tap
        self.app_ids = app_ids
        self.maxsize = maxsize
        self._items: deque[str] = deque()
        self._dropped = 0
        self.total_dropped = 0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._wake = asyncio.Event()

    def wants(self, app_id: str | None) -> bool:
        return app_id is None or self.app_ids is None or app_id in self.app_ids

    def offer(self, item: str) -> None:
        """Called with the tap's lock held. Never blocks: a full buffer loses its oldest event."""
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self._dropped += 1
            self.total_dropped += 1
        self._items.append(item)
        self._notify()

    def _notify(self) -> None:
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            # RuntimeError: the subscriber's loop is closed, nobody is reading any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def get(self, timeout: float | None = None) -> tuple[list[str], int]:
        """The waiting events (JSON strings, oldest first) and how many were dropped since the last call;
        waits up to ``timeout`` seconds for the first one. Empty after :meth:`close`."""
        if not self._items and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        with self._tap.lock:
            self._wake.clear()
            items = list(self._items)
            self._items.clear()
            dropped, self._dropped = self._dropped, 0
        return items, dropped

    def close(self) -> None:
        """Stop receiving; a pending :meth:`get` returns at once."""
        self.closed = True
        self._tap.unsubscribe(self)
        self._notify()


class DebugTap:
    """The engine's optional observer. Methods are named after what happened; all return at once."""

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER,
        redact: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.buffer_size = buffer_size
        self.lock = threading.Lock()
        self._subscribers: tuple[TapFeed, ...] = ()
        self._seq = itertools.count(1)
        self._clock = clock
        self._redact: tuple[str, ...] = ()
        self.set_redactions(redact)
        self.sent: dict[str, float] = {}  # frames sent to clients, per app: the console's messages/s

    # -- subscribers ----------------------------------------------------------------------------------

    def subscribe(self, app_ids: Iterable[str] | None = None, maxsize: int | None = None) -> TapFeed:
        """A new bounded subscription to the events of ``app_ids`` (``None``: every app). Call on the loop
        that will read it. Events without an app (Lambda invocations) go to every subscriber."""
        subscription = TapFeed(self, None if app_ids is None else frozenset(app_ids), maxsize or self.buffer_size)
        with self.lock:
            self._subscribers = (*self._subscribers, subscription)
        return subscription

    def unsubscribe(self, subscription: TapFeed) -> None:
        with self.lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscription)

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def close(self) -> None:
        """End every subscription (server shutdown: open consoles must not hold it up)."""
        for subscription in self._subscribers:
            subscription.close()

    # -- secrets --------------------------------------------------------------------------------------

    def set_redactions(self, values: Iterable[str]) -> None:
        """Strings that must never leave the server (app secrets, the admin token), whatever field they
        turn up in; short ones are ignored, since masking them would mangle ordinary text."""
        literal = {v for v in values if v and len(v) >= 6}
        # Also as they look inside a JSON string, so escaping cannot hide them from the scrub.
        literal |= {json.dumps(v)[1:-1] for v in literal}
        self._redact = tuple(sorted(literal, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._redact:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SIGNATURE.sub(REDACTED, text)

    # -- publishing -----------------------------------------------------------------------------------

    def publish(self, app_id: str | None, kind: str, **fields: Any) -> None:
        """Send one event to the subscribers that want it. Fields whose value is ``None`` are left out."""
        subscribers = self._subscribers
        if not subscribers:
            return
        wanted = [s for s in subscribers if s.wants(app_id)]
        if not wanted:
            return
        event: dict[str, Any] = {"seq": next(self._seq), "time": int(self._clock() * 1000), "type": kind}
        if app_id is not None:
            event["app_id"] = app_id
        event.update((k, v) for k, v in fields.items() if v is not None)
        item = self.scrub(json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str))
        with self.lock:
            for subscription in wanted:
                if not subscription.closed:
                    subscription.offer(item)

    def tally_sent(self, app_id: str, amount: float) -> None:
        with self.lock:  # the emulator's containers count from several threads
            self.sent[app_id] = self.sent.get(app_id, 0.0) + amount

    # -- what the engine reports ----------------------------------------------------------------------

    def connected(self, app_id: str, socket_id: str) -> None:
        self.publish(app_id, "connection", socket_id=socket_id)

    def disconnected(self, app_id: str, socket_id: str, code: int | None, channels: Sequence[str]) -> None:
        self.publish(app_id, "disconnection", socket_id=socket_id, code=code, channels=list(channels) or None)

    def subscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, occupied: bool, user_id: str | None
    ) -> None:
        self.publish(
            app_id,
            "subscribed",
            socket_id=socket_id,
            channel=channel,
            subscription_count=count,
            occupied=occupied or None,
            user_id=user_id,
        )

    def unsubscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, vacated: bool, user_id: str | None
    ) -> None:
        self.publish(
            app_id,
            "unsubscribed",
            socket_id=socket_id,
            channel=channel,
            subscription_count=count,
            vacated=vacated or None,
            user_id=user_id,
        )

    def refused(
        self, app_id: str, socket_id: str | None, code: int | None, message: str, channel: str | None, error: str
    ) -> None:
        """A ``pusher:error`` sent to a client: auth failures, rate limits, bad frames (``error`` is the
        exception's class name). Messages never carry the signature that failed."""
        self.publish(app_id, "error", socket_id=socket_id, code=code, message=message, channel=channel, error=error)

    def rest_refused(self, app_id: str, method: str, path: str, status: int, message: str, client: str) -> None:
        """A REST call of a known app answered with an error status (bad signature, 413, 429, 503...); unknown
        app ids have no console (they are only logged and counted: shared/refusals.py)."""
        self.publish(
            app_id, "rest_error", method=method, path=clip(path, 200), status=status, message=message, client=client
        )

    def client_event(
        self, app_id: str, socket_id: str, channel: str, event: str, data: str, user_id: str | None
    ) -> None:
        self.publish(
            app_id, "client_event", socket_id=socket_id, channel=channel, event=event, data=clip(data), user_id=user_id
        )

    def api_message(
        self, app_id: str, channels: Iterable[str], event: str, data: Any, except_socket: str | None
    ) -> None:
        self.publish(
            app_id, "api_message", channels=list(channels), event=event, data=clip(data), socket_id=except_socket
        )

    def webhook(
        self, app_id: str, target: str, events: Sequence[dict[str, Any]], ok: bool, detail: str, duration_ms: float
    ) -> None:
        """One webhook request and its outcome (a retry is another request, another row)."""
        self.publish(
            app_id,
            "webhook",
            target=target,
            events=[f"{e.get('name')}@{e.get('channel')}" for e in events[:20]],
            event_count=len(events),
            ok=ok,
            status=detail,
            duration_ms=round(duration_ms, 1),
        )

    def lambda_invocation(self, function: str, duration_ms: float, error: str | None = None) -> None:
        """One emulated Lambda invocation (handler name, wall time, error type if it raised)."""
        self.publish(None, "lambda", function=function, duration_ms=round(duration_ms, 1), error=error)


class TapMetrics:
    """A ``Metrics`` that also counts frames sent per app for the console, then passes everything on."""

    def __init__(self, inner: Metrics, tap: DebugTap) -> None:
        self.inner = inner
        self.tap = tap

    def count(self, name: CounterName, app_id: str, amount: float = 1.0) -> None:
        self.inner.count(name, app_id, amount)
        if name == "ws_messages_sent":
            self.tap.tally_sent(app_id, amount)

    def gauge(self, name: GaugeName, app_id: str, delta: float) -> None:
        self.inner.gauge(name, app_id, delta)

    def refused(self, app_id: str, kind: str, code: int | None) -> None:
        self.inner.refused(app_id, kind, code)
