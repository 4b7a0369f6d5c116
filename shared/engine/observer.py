"""``EngineObserver``: what the engine reports as it works (the debug console's tap, ``shared/debug/tap.py``).

The engine always has one: ``NULL_OBSERVER`` does nothing, so the engine never asks whether anyone listens
(as with ``NullMetrics``). Reports are synchronous and must not fail or block: an observer that has work to
do queues it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class EngineObserver(Protocol):
    def connected(self, app_id: str, socket_id: str) -> None: ...

    def disconnected(self, app_id: str, socket_id: str, code: int | None, channels: Sequence[str]) -> None:
        """``code``: the WebSocket close code where the edge knows it."""

    def subscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, occupied: bool, user_id: str | None
    ) -> None: ...

    def unsubscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, vacated: bool, user_id: str | None
    ) -> None: ...

    def refused(
        self, app_id: str, socket_id: str | None, code: int | None, message: str, channel: str | None, error: str
    ) -> None:
        """A ``pusher:error`` sent to a client (``error``: the exception's class name)."""

    def rest_refused(self, app_id: str, method: str, path: str, status: int, message: str, client: str) -> None:
        """A REST call of a known app answered with an error status (shared/http_api/router.py)."""

    def client_event(
        self, app_id: str, socket_id: str, channel: str, event: str, data: str, user_id: str | None
    ) -> None: ...

    def api_message(
        self, app_id: str, channels: Iterable[str], event: str, data: Any, except_socket: str | None
    ) -> None: ...


class NullObserver:
    """Reports to nobody."""

    def connected(self, app_id: str, socket_id: str) -> None:
        pass

    def disconnected(self, app_id: str, socket_id: str, code: int | None, channels: Sequence[str]) -> None:
        pass

    def subscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, occupied: bool, user_id: str | None
    ) -> None:
        pass

    def unsubscribed(
        self, app_id: str, socket_id: str, channel: str, count: int, vacated: bool, user_id: str | None
    ) -> None:
        pass

    def refused(
        self, app_id: str, socket_id: str | None, code: int | None, message: str, channel: str | None, error: str
    ) -> None:
        pass

    def rest_refused(self, app_id: str, method: str, path: str, status: int, message: str, client: str) -> None:
        pass

    def client_event(
        self, app_id: str, socket_id: str, channel: str, event: str, data: str, user_id: str | None
    ) -> None:
        pass

    def api_message(
        self, app_id: str, channels: Iterable[str], event: str, data: Any, except_socket: str | None
    ) -> None:
        pass


NULL_OBSERVER = NullObserver()
