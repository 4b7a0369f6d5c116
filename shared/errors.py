"""Errors that carry their Pusher code or HTTP status; only the edges turn them into frames or responses."""

from __future__ import annotations


class PusherError(Exception):
    """A protocol error sent to the client as ``pusher:error``.

    ``close`` says whether the connection must be closed with ``code`` afterwards (4000-4299 close in the
    protocol; 4301/4302 and ``code=None`` errors keep the connection open, except a connection that keeps
    exceeding the client-event limit: :class:`ClientEventAbuse`).
    """

    code: int | None = None
    close: bool = False

    def __init__(self, message: str, *, code: int | None = None, channel: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.channel = channel


class AppNotFound(PusherError):
    code = 4001
    close = True


class AppDisabled(PusherError):
    code = 4003
    close = True


class OverConnectionQuota(PusherError):
    code = 4004
    close = True


class PathNotFound(PusherError):
    code = 4005
    close = True


class InvalidVersion(PusherError):
    code = 4006
    close = True


class UnsupportedProtocol(PusherError):
    code = 4007
    close = True


class NoProtocolVersion(PusherError):
    code = 4008
    close = True


class Unauthorized(PusherError):
    """4009: used for a connection that is not allowed at all (origin) or failed sign-in."""

    code = 4009
    close = True


class OverCapacity(PusherError):
    code = 4100
    close = True


class ReconnectImmediately(PusherError):
    code = 4200
    close = True


class PongTimeout(PusherError):
    code = 4201
    close = True


class ClientEventRateLimited(PusherError):
    code = 4301


class ClientEventAbuse(ClientEventRateLimited):
    """4301, and the connection closed: it kept sending client events over the limit (``max_client_event_refusals``
    refusals within a window). pusher-js treats a 4300+ close as refused and does not reconnect by itself."""

    close = True


class WatchlistTooLong(PusherError):
    code = 4302


class FrameError(PusherError):
    """A frame the server refuses without closing: bad JSON, bad channel, bad auth (Pusher sends code null)."""

    code = None


class SubscriptionError(PusherError):
    """A refused subscription; sent as ``pusher:error`` (and ``pusher:subscription_error`` for the channel)."""

    code = None

    def __init__(
        self, message: str, *, channel: str, status: int = 401, error_type: str = "AuthError", code: int | None = None
    ) -> None:
        super().__init__(message, code=code, channel=channel)
        self.status = status
        self.error_type = error_type


class HttpError(Exception):
    """An HTTP API error: the REST edge answers ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoreUnavailable(Exception):
    """A store, queue or sender backend could not be reached; drivers translate their client errors to this."""
