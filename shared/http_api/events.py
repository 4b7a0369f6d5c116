"""``POST /apps/{id}/events`` and ``/batch_events``: validation with Pusher's limits, then publish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.errors import HttpError
from shared.http_api.params import EVENT_INFO, parse_info, parse_json_object, utf8_size
from shared.protocol.channels import ChannelType, channel_type, valid_channel_name, valid_event_name
from shared.settings import AppConfig
from shared.types import ChannelName, SocketId

if TYPE_CHECKING:
    from shared.engine.core import Engine

_SOCKET_ID_CHARS = frozenset("0123456789.")


def _socket_id(value: object) -> SocketId | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or not set(value) <= _SOCKET_ID_CHARS
        or value.count(".") != 1
        or value.startswith(".")
        or value.endswith(".")
    ):
        raise HttpError(400, "Invalid socket_id")
    return SocketId(value)


class EventRequest:
    """One validated event: name, data, channels, excluded socket and requested info."""

    def __init__(self, app: AppConfig, raw: dict[str, Any], *, batch: bool) -> None:
        name = raw.get("name")
        if not valid_event_name(name, app.max_event_name_length):
            raise HttpError(400, f"Invalid event name (1-{app.max_event_name_length} characters, no spaces)")
        assert isinstance(name, str)
        utf8_size(name, "Event name")
        data = raw.get("data")
        if not isinstance(data, str):
            raise HttpError(400, "data must be a string (JSON-encode objects first)")
        if utf8_size(data, "data") > app.max_event_payload_in_kb * 1024:
            raise HttpError(413, f"Event data is over {app.max_event_payload_in_kb:g} KB")
        if "channels" in raw and "channel" in raw and not batch:
            raise HttpError(400, "Give either channels or channel, not both")
        if "channels" in raw and not batch:
            channels = raw["channels"]
            if not isinstance(channels, list) or not channels:
                raise HttpError(400, "channels must be a non-empty array")
        elif "channel" in raw:
            channels = [raw["channel"]]
        else:
            raise HttpError(400, "Missing channel" if batch else "Missing channels")
        if len(channels) > app.max_event_channels_at_once:
            raise HttpError(400, f"Too many channels: at most {app.max_event_channels_at_once}")
        for channel in channels:
            if not isinstance(channel, str):
                raise HttpError(400, "Channel names must be strings")
            if not valid_channel_name(channel, app.max_channel_name_length):
                raise HttpError(400, f"Invalid channel name: {channel[:64]!r}")
        if len(channels) > 1 and any(channel_type(c) is ChannelType.ENCRYPTED for c in channels):
            raise HttpError(400, "Encrypted channels cannot be triggered together with other channels")
        self.name = name
        self.data = data
        self.channels: list[ChannelName] = [ChannelName(c) for c in dict.fromkeys(channels)]
        self.socket_id = _socket_id(raw.get("socket_id"))
        self.info = parse_info(raw.get("info"), EVENT_INFO)
        for attr in self.info:
            if attr == "user_count" and any(channel_type(c) is not ChannelType.PRESENCE for c in self.channels):
                raise HttpError(400, "user_count is only available for presence channels")
            if attr == "subscription_count" and any(channel_type(c) is ChannelType.PRESENCE for c in self.channels):
                raise HttpError(400, "subscription_count is not available for presence channels")


async def _info_for(engine: Engine, app: AppConfig, request: EventRequest) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for channel in request.channels:
        stats = await engine.store.channel_stats(app.id, channel)
        entry: dict[str, int] = {}
        if "user_count" in request.info:
            entry["user_count"] = stats.user_count or 0
        if "subscription_count" in request.info:
            entry["subscription_count"] = stats.subscription_count
        out[channel] = entry
    return out


async def trigger(engine: Engine, app: AppConfig, body: bytes) -> dict[str, Any]:
    request = EventRequest(app, parse_json_object(body), batch=False)
    await engine.publish(app, request.channels, request.name, request.data, request.socket_id)
    if request.info:
        return {"channels": await _info_for(engine, app, request)}
    return {}


async def trigger_batch(engine: Engine, app: AppConfig, body: bytes) -> dict[str, Any]:
    batch = parse_json_object(body).get("batch")
    if not isinstance(batch, list) or not batch:
        raise HttpError(400, "batch must be a non-empty array")
    if len(batch) > app.max_event_batch_size:
        raise HttpError(400, f"Batch too large: at most {app.max_event_batch_size} events")
    if not all(isinstance(item, dict) for item in batch):
        raise HttpError(400, "Each batch item must be an object")
    # Validate everything first: a bad item triggers nothing.
    requests = []
    for index, item in enumerate(batch):
        try:
            requests.append(EventRequest(app, item, batch=True))
        except HttpError as exc:
            raise HttpError(exc.status, f"batch[{index}]: {exc.message}") from None
    for request in requests:
        await engine.publish(app, request.channels, request.name, request.data, request.socket_id)
    if any(r.info for r in requests):
        results = []
        for request in requests:
            info = await _info_for(engine, app, request) if request.info else {}
            results.append(info.get(request.channels[0], {}))
        return {"batch": results}
    return {}
