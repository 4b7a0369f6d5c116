"""The console's picture of an app: connection count and occupied channels with counts and members.

Read from the ``ChannelStore`` (the same numbers the REST API answers with) and pushed down the stream,
so the page never derives state from events it may have dropped.
"""

from __future__ import annotations

from typing import Any

from shared.protocol.channels import ChannelType, channel_type
from shared.store.base import ChannelStore
from shared.types import AppId

MAX_CHANNELS = 500
MAX_MEMBERS = 100


async def app_state(store: ChannelStore, app_id: str) -> dict[str, Any]:
    """``{"connections", "channel_count", "channels": [{"name", "subscription_count", "user_count"?,
    "members"?}]}``: at most ``MAX_CHANNELS`` channels (by name) and ``MAX_MEMBERS`` members each."""
    aid = AppId(app_id)
    channels = await store.channels(aid)
    rows: list[dict[str, Any]] = []
    for name in sorted(channels)[:MAX_CHANNELS]:
        stats = channels[name]
        row: dict[str, Any] = {"name": name, "subscription_count": stats.subscription_count}
        if channel_type(name) is ChannelType.PRESENCE:
            members = await store.members(aid, name)
            row["user_count"] = len(members)
            row["members"] = [{"id": uid, "info": info} for uid, info in list(members.items())[:MAX_MEMBERS]]
        rows.append(row)
    return {"connections": await store.connection_count(aid), "channel_count": len(channels), "channels": rows}
