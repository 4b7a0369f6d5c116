"""Encoding and decoding of Pusher frames (docs/sources.md#connection-and-handshake).

Server frames carry ``data`` as a JSON *string*; frames are built once and the same bytes go to every
subscriber, so builders return ``bytes``.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import FrameError

# check_circular=False: every value framed here comes from json.loads or the engine's own literals, so it holds
# no cycle; skipping the per-container cycle bookkeeping makes a presence roster of 1,000 members ~20 % cheaper.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def dumps(value: Any) -> str:
    return _dumps(value)


def _encode(value: Any) -> bytes:
    # A lone surrogate (JSON "\\ud800" from a client or the REST API) cannot be UTF-8 encoded; strings only
    # occur inside JSON string literals, where backslashreplace writes exactly the JSON escape again.
    return _dumps(value).encode("utf-8", "backslashreplace")


def frame(event: str, data: Any = None, channel: str | None = None, user_id: str | None = None) -> bytes:
    """Build a server frame; ``data`` that is not already a string is JSON-encoded (the protocol's double
    encoding)."""
    out: dict[str, Any] = {"event": event}
    if channel is not None:
        out["channel"] = channel
    if data is not None:
        out["data"] = data if isinstance(data, str) else _dumps(data)
    if user_id is not None:
        out["user_id"] = user_id
    return _encode(out)


def connection_established(socket_id: str, activity_timeout: int) -> bytes:
    return frame("pusher:connection_established", {"socket_id": socket_id, "activity_timeout": activity_timeout})


def error_frame(message: str, code: int | None, channel: str | None = None) -> bytes:
    # Pusher sends data of pusher:error as an object, not a string; pusher-js accepts both.
    out: dict[str, Any] = {"event": "pusher:error", "data": {"code": code, "message": message}}
    if channel is not None:
        out["channel"] = channel
    return _encode(out)


def subscription_error(channel: str, error_type: str, error: str, status: int) -> bytes:
    return frame("pusher:subscription_error", {"type": error_type, "error": error, "status": status}, channel)


PONG = frame("pusher:pong", {})
PING = frame("pusher:ping", {})


def parse_client_frame(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode a client frame into a dict with a string ``event``; raise ``FrameError`` otherwise."""
    if len(raw) > max_bytes:
        raise FrameError(f"Frame too large: {len(raw)} bytes, limit {max_bytes}")
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("Invalid JSON") from exc
    except RecursionError:  # deeply nested arrays fit in a frame; not a ValueError
        raise FrameError("JSON nested too deeply") from None
    if not isinstance(msg, dict):
        raise FrameError("Frame must be a JSON object")
    if (b"\\u" in raw if isinstance(raw, bytes) else "\\u" in raw) and not _encodable(msg):
        raise FrameError("Frame contains an unpaired surrogate escape")
    if not isinstance(msg.get("event"), str):
        raise FrameError("Frame must have a string 'event'")
    return msg


def _encodable(msg: dict[str, Any]) -> bool:
    """Whether the decoded frame holds no lone surrogate (only a ``\\uD8xx``-style escape can produce one)."""
    try:
        _dumps(msg).encode()
    except UnicodeEncodeError:
        return False
    return True


def data_object(msg: dict[str, Any]) -> dict[str, Any]:
    """``data`` of a ``pusher:*`` client frame: an object (some clients send it JSON-encoded as a string)."""
    data = msg.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise FrameError("'data' must be a JSON object") from exc
    if not isinstance(data, dict):
        raise FrameError("'data' must be a JSON object")
    return data
