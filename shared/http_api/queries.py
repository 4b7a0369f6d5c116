"""The read endpoints: ``GET /channels``, ``GET /channels/{name}`` and ``GET /channels/{name}/users``.

Pusher answers 400 when an attribute does not apply to the channel type (``user_count`` outside presence,
``subscription_count`` on presence), so a caller never mistakes a missing attribute for a zero.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import HttpError
from shared.http_api.params import CHANNEL_INFO, EVENT_INFO, parse_info, path_channel
from shared.protocol.channels import ChannelType, channel_type, is_cache
from shared.settings import AppConfig
from shared.store.base import CachedEvent

if TYPE_CHECKING:
    from shared.engine.core import Engine

_PREFIX_RE = re.compile(r"[-a-zA-Z0-9_=@,.;]*")


def _prefix(value: str | None, app: AppConfig) -> str:
    prefix = value or ""
    if len(prefix) > app.max_channel_name_length or _PREFIX_RE.fullmatch(prefix) is None:
        raise HttpError(400, "filter_by_prefix must be the start of a valid channel name")
    return prefix


async def list_channels(engine: Engine, app: AppConfig, query: Mapping[str, str]) -> dict[str, Any]:
    """Occupied channels, optionally filtered by prefix; ``user_count`` needs ``filter_by_prefix=presence-``."""
    prefix = _prefix(query.get("filter_by_prefix"), app)
    info = parse_info(query.get("info"), EVENT_INFO)
    presence_only = prefix.startswith("presence-")
    if "user_count" in info and not presence_only:
        raise HttpError(400, "info=user_count is only available with filter_by_prefix=presence-")
    if "subscription_count" in info and presence_only:
        raise HttpError(400, "info=subscription_count is not available for presence channels")
    channels: dict[str, dict[str, int]] = {}
    for name, stats in (await engine.store.channels(app.id, prefix)).items():
        kind = channel_type(name)
        if kind is ChannelType.SERVER_TO_USER:
            continue  # internal: pusher-js subscribes it after signin, it is not an app channel
        entry: dict[str, int] = {}
        if "user_count" in info:
            entry["user_count"] = stats.user_count or 0
        if "subscription_count" in info and kind is not ChannelType.PRESENCE:
            entry["subscription_count"] = stats.subscription_count
        channels[name] = entry
    return {"channels": channels}


def _cache_entry(cached: CachedEvent | None) -> dict[str, Any] | None:
    if cached is None:
        return None
    frame = json.loads(cached.frame)
    return {"data": frame.get("data"), "ttl": math.ceil(cached.ttl)}


async def channel_info(engine: Engine, app: AppConfig, name: str, query: Mapping[str, str]) -> dict[str, Any]:
    channel = path_channel(name, app)
    info = parse_info(query.get("info"), CHANNEL_INFO)
    kind = channel_type(channel)
    if "user_count" in info and kind is not ChannelType.PRESENCE:
        raise HttpError(400, "info=user_count is only available for presence channels")
    if "subscription_count" in info and kind is ChannelType.PRESENCE:
        raise HttpError(400, "info=subscription_count is not available for presence channels")
    if "cache" in info and not is_cache(channel):
        raise HttpError(400, "info=cache is only available for cache channels")
    stats = await engine.store.channel_stats(app.id, channel)
    out: dict[str, Any] = {"occupied": stats.subscription_count > 0}
    if "user_count" in info:
        out["user_count"] = stats.user_count or 0
    if "subscription_count" in info:
        out["subscription_count"] = stats.subscription_count
    if "cache" in info:
        out["cache"] = _cache_entry(await engine.store.cache_get(app.id, channel))
    return out


async def channel_users(engine: Engine, app: AppConfig, name: str) -> dict[str, Any]:
    channel = path_channel(name, app)
    if channel_type(channel) is not ChannelType.PRESENCE:
        raise HttpError(400, "Users can only be listed for presence channels")
    members = await engine.store.members(app.id, channel)
    return {"users": [{"id": user_id} for user_id in members]}
