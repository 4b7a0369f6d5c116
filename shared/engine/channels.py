"""Subscriptions, presence, client events, cache channels and subscription counts, over ``ChannelsEngine``."""

from __future__ import annotations

import json
from typing import Any, Protocol

from shared.auth import check_channel_auth
from shared.engine.emitter import WebhookEmitter
from shared.engine.observer import EngineObserver
from shared.engine.outbox import Outbox
from shared.errors import ClientEventAbuse, ClientEventRateLimited, FrameError, SubscriptionError
from shared.limits.base import RateLimiter
from shared.metrics.base import Metrics
from shared.protocol import frames
from shared.protocol.channels import (
    ChannelType,
    allows_client_events,
    channel_type,
    check_channel_name,
    is_cache,
    server_to_user_channel,
    valid_event_name,
    valid_user_id,
)
from shared.settings import AppConfig
from shared.store.base import ChannelStore, JoinResult, LeaveResult, Member, PresenceFull
from shared.types import ChannelName, SocketId, UserId

SUBSCRIPTION_COUNT_THROTTLE_ABOVE = 100
SUBSCRIPTION_COUNT_THROTTLE_SECONDS = 5.0
# The window in which a connection's refused client events are counted (AppConfig.max_client_event_refusals).
CLIENT_EVENT_ABUSE_WINDOW_SECONDS = 10.0


class ChannelsEngine(Outbox, Protocol):
    """What these operations use of the engine (``Engine`` is one)."""

    @property
    def store(self) -> ChannelStore: ...

    @property
    def webhooks(self) -> WebhookEmitter: ...

    @property
    def limiter(self) -> RateLimiter:
        """Shared limits (cache-miss webhooks, subscription-count throttling)."""
        ...

    @property
    def connection_limiter(self) -> RateLimiter:
        """Limits of one connection (client events per second)."""
        ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def observer(self) -> EngineObserver: ...

    @property
    def cache_ttl_seconds(self) -> float: ...


def _auth_failed(channel: str) -> SubscriptionError:
    return SubscriptionError(
        f"Invalid signature: Expected HMAC SHA256 hex digest for channel {channel}", channel=channel, status=401
    )


async def _presence_member(
    engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, channel: str, data: dict[str, Any]
) -> Member:
    auth = data.get("auth")
    channel_data = data.get("channel_data")
    if channel_data is None:
        # Signed-in connections may omit channel_data: the member comes from the signin user_data.
        connection = await engine.store.get_connection(app.id, socket_id)
        if connection is None or connection.user_id is None:
            raise SubscriptionError(
                "Presence subscription requires channel_data or a signed-in connection", channel=channel, status=400
            )
        if not check_channel_auth(app.key, app.secret, auth, socket_id, channel):
            raise _auth_failed(channel)
        user_data = json.loads(connection.user_data or "{}")
        return _sized_member(app, channel, connection.user_id, user_data.get("user_info"))
    if not isinstance(channel_data, str):
        raise SubscriptionError("channel_data must be a JSON string", channel=channel, status=400)
    if not check_channel_auth(app.key, app.secret, auth, socket_id, channel, channel_data):
        raise _auth_failed(channel)
    try:
        parsed = json.loads(channel_data)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        raise SubscriptionError("channel_data is not valid JSON", channel=channel, status=400) from None
    if not isinstance(parsed, dict) or "user_id" not in parsed:
        raise SubscriptionError("channel_data must be an object with a user_id", channel=channel, status=400)
    raw_id = parsed["user_id"]
    user_id = str(raw_id) if isinstance(raw_id, int) and not isinstance(raw_id, bool) else raw_id
    if not valid_user_id(user_id):
        raise SubscriptionError("Invalid user_id in channel_data", channel=channel, status=400)
    return _sized_member(app, channel, UserId(user_id), parsed.get("user_info"))


def _sized_member(app: AppConfig, channel: str, user_id: UserId, user_info: Any) -> Member:
    # backslashreplace: a lone surrogate counts as the JSON escape it is sent as, instead of raising.
    size = len(frames.dumps(user_info).encode("utf-8", "backslashreplace")) if user_info is not None else 0
    if size > app.max_presence_member_size_in_kb * 1024:
        raise SubscriptionError(
            f"Presence member user_info is over {app.max_presence_member_size_in_kb} KB",
            channel=channel,
            status=413,
            error_type="LimitReached",
        )
    return Member(user_id=user_id, user_info=user_info)


async def subscribe(engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, data: dict[str, Any]) -> None:
    name = data.get("channel")
    try:
        channel = ChannelName(check_channel_name(name, app.max_channel_name_length))
    except FrameError as exc:
        if not isinstance(name, str) or not name:
            raise  # no channel a client could have asked for: the connection-level error alone
        # pusher-js routes a frame to the channel of exactly this name, so the refusal reaches
        # channel.bind("pusher:subscription_error") instead of leaving the channel pending (docs/protocol.md).
        raise SubscriptionError(exc.message, channel=name, status=400, error_type="InvalidChannel") from None
    kind = channel_type(channel)
    member: Member | None = None
    if kind is ChannelType.SERVER_TO_USER:
        connection = await engine.store.get_connection(app.id, socket_id)
        if connection is None or connection.user_id is None or channel != server_to_user_channel(connection.user_id):
            raise SubscriptionError(
                "Server-to-user channels are only for the signed-in user's own id", channel=channel, status=403
            )
    elif kind is ChannelType.PRESENCE:
        member = await _presence_member(engine, app, socket_id, channel, data)
    elif kind in (ChannelType.PRIVATE, ChannelType.ENCRYPTED) and not check_channel_auth(
        app.key, app.secret, data.get("auth"), socket_id, channel
    ):
        raise _auth_failed(channel)

    if member is None:
        with engine.joining(app, socket_id, channel):  # no peer's count older than this join, nor before it
            result = await _join(engine, app, socket_id, channel, None)
            await engine.send(app, socket_id, frames.frame("pusher_internal:subscription_succeeded", {}, channel))
    else:
        with engine.joining(app, socket_id, channel):  # no member_added from a peer before the roster
            result = await _join(engine, app, socket_id, channel, member)
            presence: Any = result.presence_data
            if presence is None:
                members = await engine.store.members(app.id, channel)
                roster = members if isinstance(members, dict) else dict(members)  # only encoded, never mutated
                presence = {"presence": {"ids": list(roster), "hash": roster, "count": len(roster)}}
            await engine.send(app, socket_id, frames.frame("pusher_internal:subscription_succeeded", presence, channel))
    await _after_join(engine, app, socket_id, channel, member, result)


async def _join(
    engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, channel: ChannelName, member: Member | None
) -> JoinResult:
    result = await engine.store.subscribe(app.id, socket_id, channel, member, app.max_presence_members_per_channel)
    if isinstance(result, PresenceFull):
        raise SubscriptionError(
            f"Presence channel is full ({result.limit} members)",
            channel=channel,
            status=403,
            error_type="LimitReached",
            code=4100,
        )
    if not result.joined:
        raise FrameError(f"Existing subscription to channel {channel}", channel=channel)
    return result


async def _after_join(
    engine: ChannelsEngine,
    app: AppConfig,
    socket_id: SocketId,
    channel: ChannelName,
    member: Member | None,
    result: JoinResult,
) -> None:
    user_id = member.user_id if member is not None else None
    engine.observer.subscribed(app.id, socket_id, channel, result.subscription_count, result.occupied, user_id)
    if result.occupied:
        await engine.webhooks.emit(app, "channel_occupied", channel)
    if member is not None and result.member_added:
        added = {"user_id": member.user_id, "user_info": member.user_info}
        await engine.broadcast_channel(
            app, channel, frames.frame("pusher_internal:member_added", added, channel), socket_id
        )
        await engine.webhooks.emit(app, "member_added", channel, user_id=member.user_id)
    if is_cache(channel):
        cached = await engine.store.cache_get(app.id, channel)
        if cached is not None:
            await engine.send(app, socket_id, cached.frame)
        else:
            await engine.send(app, socket_id, frames.frame("pusher:cache_miss", None, channel))
            # Pusher de-duplicates cache_miss webhooks for simultaneous subscribers.
            if await engine.limiter.hit(f"cache_miss:{app.id}:{channel}", 1, 1.0):
                await engine.webhooks.emit(app, "cache_miss", channel)
    await _subscription_count(engine, app, channel, result.subscription_count, result.version)


async def _subscription_count(
    engine: ChannelsEngine, app: AppConfig, channel: ChannelName, count: int, version: int
) -> None:
    """The channel's count to its subscribers (throttled above ``SUBSCRIPTION_COUNT_THROTTLE_ABOVE``) and the
    webhook; ``version`` lets a cluster drop a count that arrives after a newer one (``JoinResult.version``)."""
    if not app.enable_subscription_count or channel_type(channel) in (ChannelType.PRESENCE, ChannelType.SERVER_TO_USER):
        return
    if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE and not await engine.limiter.hit(
        f"subscription_count:{app.id}:{channel}", 1, SUBSCRIPTION_COUNT_THROTTLE_SECONDS
    ):
        return
    if count > 0:
        await engine.broadcast_channel(
            app,
            channel,
            frames.frame("pusher_internal:subscription_count", {"subscription_count": count}, channel),
            version=version,
        )
    await engine.webhooks.emit(app, "subscription_count", channel, subscription_count=count)


async def unsubscribe(engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, data: dict[str, Any]) -> None:
    channel = ChannelName(check_channel_name(data.get("channel"), app.max_channel_name_length))
    result = await engine.store.unsubscribe(app.id, socket_id, channel)
    if not result.left:
        raise FrameError(f"Not subscribed to channel {channel}", channel=channel)
    engine.observer.unsubscribed(
        app.id, socket_id, channel, result.subscription_count, result.vacated, result.member_removed
    )
    await after_leave(engine, app, result)


async def after_leave(engine: ChannelsEngine, app: AppConfig, result: LeaveResult) -> None:
    channel = result.channel
    if result.member_removed is not None:
        await engine.broadcast_channel(
            app, channel, frames.frame("pusher_internal:member_removed", {"user_id": result.member_removed}, channel)
        )
        await engine.webhooks.emit(app, "member_removed", channel, user_id=result.member_removed)
    if result.vacated:
        await engine.webhooks.emit(app, "channel_vacated", channel)
    await _subscription_count(engine, app, channel, result.subscription_count, result.version)


async def client_event(engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, msg: dict[str, Any]) -> None:
    event: str = msg["event"]
    channel = msg.get("channel")
    if not app.enable_client_messages:
        raise FrameError(
            "Client events are not enabled for this app", channel=channel if isinstance(channel, str) else None
        )
    channel = ChannelName(check_channel_name(channel, app.max_channel_name_length))
    if not valid_event_name(event, app.max_event_name_length):
        raise FrameError("Invalid event name", channel=channel)
    if not allows_client_events(channel):
        raise FrameError("Client events are only allowed on private and presence channels", channel=channel)
    subscription = await engine.store.subscription(app.id, socket_id, channel)
    if subscription is None:
        raise FrameError(f"Client event rejected: not subscribed to {channel}", channel=channel)
    data = msg.get("data")
    encoded = data if isinstance(data, str) else frames.dumps(data)
    if len(encoded.encode()) > app.max_event_payload_in_kb * 1024:
        raise FrameError(f"Client event data is over {app.max_event_payload_in_kb} KB", channel=channel)
    if not await engine.connection_limiter.hit(
        f"client_events:{app.id}:{socket_id}", app.max_client_events_per_second, 1.0
    ):
        await _count_refusal(engine, app, socket_id, channel)
        raise ClientEventRateLimited("Client event rejected due to rate limit", channel=channel)
    user_id = subscription.user_id
    await engine.broadcast_channel(app, channel, frames.frame(event, encoded, channel, user_id), socket_id)
    engine.metrics.count("client_events", app.id)
    engine.observer.client_event(app.id, socket_id, channel, event, encoded, user_id)
    await engine.webhooks.emit(
        app, "client_event", channel, event=event, data=encoded, socket_id=socket_id, user_id=user_id
    )


async def _count_refusal(engine: ChannelsEngine, app: AppConfig, socket_id: SocketId, channel: ChannelName) -> None:
    """A connection that keeps sending over the limit is closed (4301): on AWS each of its frames is a billed
    message in, an invocation and a refusal out, and API Gateway has no per-connection throttle. Refusals are
    counted on the same limiter, so the count holds across Lambda containers and cluster nodes."""
    if app.max_client_event_refusals is None:
        return
    key = f"client_event_refusals:{app.id}:{socket_id}"
    if not await engine.connection_limiter.hit(key, app.max_client_event_refusals, CLIENT_EVENT_ABUSE_WINDOW_SECONDS):
        raise ClientEventAbuse(
            f"Client event rate limit exceeded more than {app.max_client_event_refusals} times in "
            f"{CLIENT_EVENT_ABUSE_WINDOW_SECONDS:.0f} s; closing",
            channel=channel,
        )


async def publish_to_channel(
    engine: ChannelsEngine, app: AppConfig, channel: str, event: str, data: Any, except_socket: SocketId | None
) -> None:
    frame = frames.frame(event, data, channel)
    kind = channel_type(channel)
    if is_cache(channel):
        await engine.store.cache_put(app.id, ChannelName(channel), frame, engine.cache_ttl_seconds)
    if kind is ChannelType.SERVER_TO_USER:
        sockets = await engine.store.user_sockets(app.id, UserId(channel[len("#server-to-user-") :]))
        await engine.broadcast(app, sockets, frame, except_socket)
    else:
        await engine.broadcast_channel(app, ChannelName(channel), frame, except_socket)
