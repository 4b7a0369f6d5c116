"""Request parsing shared by the REST handlers; every malformed value becomes ``HttpError(400)``, never a 500.

The checks here exist because the inputs are hostile: JSON nested deeply enough to overflow the parser,
strings holding lone surrogates (valid JSON escapes, not encodable as UTF-8), names with any character.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from shared.errors import HttpError
from shared.protocol.channels import SERVER_TO_USER_PREFIX, valid_channel_name
from shared.settings import AppConfig
from shared.types import ChannelName

EVENT_INFO = ("user_count", "subscription_count")
CHANNEL_INFO = ("user_count", "subscription_count", "cache")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "Request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise HttpError(400, "Request body must be a JSON object")
    return parsed


def parse_info(value: object, allowed: Collection[str]) -> tuple[str, ...]:
    """``info`` is a comma-separated attribute list; an unknown or empty attribute is an error, not ignored."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise HttpError(400, "info must be a comma-separated string")
    attrs = tuple(dict.fromkeys(value.split(",")))
    for attr in attrs:
        if attr not in allowed:
            raise HttpError(400, f"Unsupported info attribute {attr[:32]!r}: expected {', '.join(allowed)}")
    return attrs


def utf8_size(value: str, what: str) -> int:
    """Size in bytes as it will go on the wire; JSON can smuggle in lone surrogates, which cannot be sent."""
    try:
        return len(value.encode())
    except UnicodeEncodeError:
        raise HttpError(400, f"{what} is not valid Unicode") from None


def path_channel(value: str, app: AppConfig) -> ChannelName:
    """A channel named in a URL path: the public charset only (``#server-to-user-`` channels are internal)."""
    if value.startswith(SERVER_TO_USER_PREFIX) or not valid_channel_name(value, app.max_channel_name_length):
        raise HttpError(
            400,
            f"Invalid channel name {value[:64]!r}: 1-{app.max_channel_name_length} characters of A-Z a-z 0-9 _-=@,.;",
        )
    return ChannelName(value)
