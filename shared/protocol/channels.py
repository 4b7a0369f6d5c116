"""Channel names and types (docs/sources.md#channels-and-names): what a name means and whether it is allowed."""

from __future__ import annotations

import enum
import re

from shared.errors import FrameError

_NAME_RE = re.compile(r"[-a-zA-Z0-9_=@,.;]+")
_EVENT_RE = re.compile(r"[^\s]+")
SERVER_TO_USER_PREFIX = "#server-to-user-"


class ChannelType(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"
    ENCRYPTED = "private-encrypted"
    PRESENCE = "presence"
    SERVER_TO_USER = "server-to-user"


def channel_type(name: str) -> ChannelType:
    """Classify a channel; the four ``cache-`` variants share their base type (see :func:`is_cache`)."""
    if name.startswith(SERVER_TO_USER_PREFIX):
        return ChannelType.SERVER_TO_USER
    if name.startswith(("private-encrypted-", "private-encrypted-cache-")):
        return ChannelType.ENCRYPTED
    if name.startswith("private-"):
        return ChannelType.PRIVATE
    if name.startswith("presence-"):
        return ChannelType.PRESENCE
    return ChannelType.PUBLIC


def is_cache(name: str) -> bool:
    return name.startswith(("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"))


def requires_auth(name: str) -> bool:
    return channel_type(name) in (ChannelType.PRIVATE, ChannelType.ENCRYPTED, ChannelType.PRESENCE)


def allows_client_events(name: str) -> bool:
    """Client events go only to private and presence channels; encrypted ones are opaque to the server."""
    return channel_type(name) in (ChannelType.PRIVATE, ChannelType.PRESENCE)


def valid_channel_name(name: object, max_length: int) -> bool:
    if not isinstance(name, str) or not 0 < len(name) <= max_length:
        return False
    if name.startswith(SERVER_TO_USER_PREFIX):
        return _NAME_RE.fullmatch(name[len(SERVER_TO_USER_PREFIX) :]) is not None
    return _NAME_RE.fullmatch(name) is not None


def check_channel_name(name: object, max_length: int) -> str:
    """Return the name if it is valid, else raise ``FrameError`` (a ``pusher:error`` with code null)."""
    if not valid_channel_name(name, max_length):
        raise FrameError(f"Invalid channel name: {str(name)[: max_length + 16]!r}")
    assert isinstance(name, str)
    return name


def valid_event_name(name: object, max_length: int) -> bool:
    return isinstance(name, str) and 0 < len(name) <= max_length and _EVENT_RE.fullmatch(name) is not None


def valid_user_id(user_id: object) -> bool:
    """User ids follow the channel-name charset and stay within 128 characters.

    Pusher's limits: docs/sources.md#identifiers-and-limits.
    """
    return isinstance(user_id, str) and 0 < len(user_id) <= 128 and _NAME_RE.fullmatch(user_id) is not None


def server_to_user_channel(user_id: str) -> str:
    return SERVER_TO_USER_PREFIX + user_id
