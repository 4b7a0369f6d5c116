"""The engine: one object holding the drivers, with the connection lifecycle and frame dispatch.

It keeps no state of its own: every decision reads or writes the ``ChannelStore`` and every frame leaves
through the ``Sender``, so the local server and the Lambda handlers run exactly this code.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from shared.apps.base import AppStore
from shared.engine import channels as channel_ops
from shared.engine import users as user_ops
from shared.engine.emitter import WebhookEmitter
from shared.engine.observer import NULL_OBSERVER, EngineObserver
from shared.errors import (
    AppDisabled,
    AppNotFound,
    FrameError,
    InvalidVersion,
    NoProtocolVersion,
    OverCapacity,
    OverConnectionQuota,
    PusherError,
    StoreUnavailable,
    SubscriptionError,
    Unauthorized,
    UnsupportedProtocol,
)
from shared.limits.base import RateLimiter
from shared.metrics.base import Metrics, NullMetrics
from shared.protocol import frames
from shared.ratelog import RateLimitedLog
from shared.refusals import report as report_refusal
from shared.sender.base import ChannelBroadcaster, Sender
from shared.settings import AppConfig, RateLimit
from shared.store.base import ChannelStore, Connection
from shared.types import AppId, ChannelName, SocketId
from shared.webhooks.base import WebhookQueue

log = logging.getLogger("sockless.engine")
store_log = RateLimitedLog(log)
SUPPORTED_PROTOCOLS = range(5, 8)


def mint_socket_id() -> SocketId:
    """``<n>.<n>``: the server SDKs reject any other shape (docs/sources.md#identifiers-and-limits)."""
    return SocketId(f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}")


def origin_allowed(app: AppConfig, origin: str | None) -> bool:
    if not app.allowed_origins or "*" in app.allowed_origins:
        return True
    if origin is None:
        return False
    return any(origin == allowed or fnmatch.fnmatchcase(origin, allowed) for allowed in app.allowed_origins)


class Engine:
    def __init__(
        self,
        *,
        apps: AppStore,
        store: ChannelStore,
        sender: Sender,
        webhooks: WebhookQueue,
        limiter: RateLimiter,
        connection_limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
        count_connections: bool = True,
        activity_timeout: int = 120,
        cache_ttl_seconds: float = 1800,
        max_frame_bytes: int = 64 * 1024,
        connections_per_ip: RateLimit | None = None,
        webhook_delay_seconds: float = 3.0,
        socket_ids: Callable[[], SocketId] = mint_socket_id,
        clock: Callable[[], float] = time.time,
        observer: EngineObserver = NULL_OBSERVER,
    ) -> None:
        self.apps = apps
        self.store = store
        self.sender = sender
        self._channel_sender = sender if isinstance(sender, ChannelBroadcaster) else None
        self.webhooks = WebhookEmitter(webhooks, webhook_delay_seconds, limiter)
        self.limiter = limiter
        # Limits keyed by one connection (client events per socket). The local server holds a connection in
        # one process for its life, so it counts them there: no store round trip per client event, even in a
        # Redis cluster. On Lambda any invocation may handle the next frame, so they stay in the shared store.
        self.connection_limiter = connection_limiter or limiter
        self.metrics = metrics or NullMetrics()
        # Whether connect/disconnect move the ``connections`` gauge. On Lambda each connection is removed once
        # fleet-wide, so the deltas add up. A local-server node counts its open sockets at its edge instead:
        # in a cluster it also removes connections it never held (a dead peer's), which must not count there.
        self.count_connections = count_connections
        self.activity_timeout = activity_timeout
        self.cache_ttl_seconds = cache_ttl_seconds
        self.max_frame_bytes = max_frame_bytes
        self.connections_per_ip = connections_per_ip
        self._socket_ids = socket_ids
        self.clock = clock
        self.observer = observer  # the debug console's tap when it is on (shared/debug)

    # -- connection lifecycle -------------------------------------------------------------------------

    async def authorize_connection(
        self, app_key: str, protocol: str | None, origin: str | None, address: str | None = None
    ) -> AppConfig:
        """Check the client's address against the per-IP connection limit, then key, app state, protocol
        version and origin; raise the ``PusherError`` the protocol defines."""
        limit = self.connections_per_ip
        if (
            limit is not None
            and address is not None
            and not await self.limiter.hit(f"ws_ip:{address}", limit.max_requests, limit.window_seconds)
        ):
            raise OverCapacity("Too many connections from this address")
        app = await self.apps.by_key(app_key)
        if app is None:
            raise AppNotFound(f"App key {app_key[:64]} does not exist")
        try:
            self._check_connection(app, protocol, origin)
        except PusherError as exc:
            self._refused_connection(app, exc)
            raise
        return app

    @staticmethod
    def _check_connection(app: AppConfig, protocol: str | None, origin: str | None) -> None:
        if not app.enabled:
            raise AppDisabled("App is disabled")
        if protocol is None or protocol == "":
            raise NoProtocolVersion("No protocol version supplied")
        if not protocol.isdigit() or len(protocol) > 4:
            raise InvalidVersion(f"Invalid version string format: {protocol[:16]}")
        if int(protocol) not in SUPPORTED_PROTOCOLS:
            raise UnsupportedProtocol(f"Unsupported protocol version: {protocol}")
        if not origin_allowed(app, origin):
            raise Unauthorized("Origin not allowed")

    def _refused_connection(self, app: AppConfig, exc: PusherError) -> None:
        """A refused handshake of a known app is worth seeing in the debug console (an unknown key has no app)."""
        self.observer.refused(app.id, None, exc.code, exc.message, None, type(exc).__name__)

    async def connect(
        self, app: AppConfig, socket_id: SocketId | None = None, *, connection_id: str | None = None
    ) -> Connection:
        """Record a connection (raises ``OverConnectionQuota``); the edge then sends :meth:`welcome`.
        ``connection_id`` is the transport's own id (API Gateway's), stored beside the numeric socket id."""
        connection = Connection(
            app_id=app.id,
            socket_id=socket_id or self._socket_ids(),
            connected_at=self.clock(),
            connection_id=connection_id,
        )
        if not await self.store.add_connection(connection, app.max_connections):
            exc = OverConnectionQuota("App is over its connection quota")
            self._refused_connection(app, exc)
            raise exc
        self.metrics.count("new_connections", app.id)
        if self.count_connections:
            self.metrics.gauge("connections", app.id, 1)
        self.observer.connected(app.id, connection.socket_id)
        return connection

    def welcome(self, socket_id: SocketId) -> bytes:
        return frames.connection_established(socket_id, self.activity_timeout)

    async def disconnect(self, app: AppConfig, socket_id: SocketId, close_code: int | None = None) -> None:
        """Remove the connection and everything it held, with member_removed/vacated effects. Idempotent.
        ``close_code``: the WebSocket close code where the edge knows it (only reported, to the debug tap)."""
        departure = await self.store.remove_connection(app.id, socket_id)
        if departure is None:
            return
        self.observer.disconnected(app.id, socket_id, close_code, [leave.channel for leave in departure.left])
        self.metrics.count("disconnections", app.id)
        if self.count_connections:
            self.metrics.gauge("connections", app.id, -1)
        for leave in departure.left:
            await channel_ops.after_leave(self, app, leave)
        if departure.user_offline and departure.connection.user_id is not None:
            await user_ops.notify_watchers(self, app, departure.connection.user_id, "offline")

    async def drop_gone(self, app: AppConfig, gone: Collection[SocketId]) -> None:
        """Sockets the sender found gone (410 on AWS) are cleaned up like a disconnect."""
        for socket_id in gone:
            await self.disconnect(app, socket_id)

    # -- frames ---------------------------------------------------------------------------------------

    async def handle_binary(self, app: AppConfig, socket_id: SocketId) -> None:
        """A binary frame: the protocol is text (JSON) only, so the client gets a ``pusher:error``."""
        await self.refuse(app, socket_id, FrameError("Binary frames are not supported"))

    async def handle(self, app: AppConfig, socket_id: SocketId, raw: str | bytes) -> None:
        """Handle one client frame; protocol errors go back to the client, never up to the caller."""
        self.metrics.count("ws_messages_received", app.id)
        self.metrics.count("ws_bytes_received", app.id, len(raw))
        try:
            msg = frames.parse_client_frame(raw, self.max_frame_bytes)
            event: str = msg["event"]
            if event == "pusher:ping":
                await self.send(app, socket_id, frames.PONG)
            elif event == "pusher:pong":
                return
            elif event == "pusher:subscribe":
                await channel_ops.subscribe(self, app, socket_id, frames.data_object(msg))
            elif event == "pusher:unsubscribe":
                await channel_ops.unsubscribe(self, app, socket_id, frames.data_object(msg))
            elif event == "pusher:signin":
                await user_ops.signin(self, app, socket_id, frames.data_object(msg))
            elif event.startswith("client-"):
                await channel_ops.client_event(self, app, socket_id, msg)
            else:
                raise FrameError(f"Unsupported event: {event[:64]}")
        except PusherError as exc:
            await self.refuse(app, socket_id, exc)
        except StoreUnavailable:
            # The frame's effect is unknown, so the client must start over: 4100 makes pusher-js reconnect after
            # a back-off and subscribe again, which rebuilds its state once the store is back.
            store_log.warning(
                "engine:store", "store unavailable while handling a frame from %s; closing with 4100", socket_id
            )
            await self.refuse(app, socket_id, OverCapacity("Service temporarily unavailable, reconnect later"))

    async def refuse(self, app: AppConfig, socket_id: SocketId, exc: PusherError) -> None:
        self.metrics.count("errors", app.id)
        report_refusal(
            self.metrics,
            kind="frame",
            app_id=app.id,
            code=exc.code,
            reason=exc.message,
            socket_id=socket_id,
            channel=exc.channel,
        )
        self.observer.refused(app.id, socket_id, exc.code, exc.message, exc.channel, type(exc).__name__)
        if isinstance(exc, SubscriptionError) and exc.channel is not None:
            await self.send(
                app, socket_id, frames.subscription_error(exc.channel, exc.error_type, exc.message, exc.status)
            )
        await self.send(app, socket_id, frames.error_frame(exc.message, exc.code, exc.channel))
        if exc.close and exc.code is not None:
            await self.sender.disconnect(app.id, socket_id, exc.code, exc.message)

    # -- publishing -----------------------------------------------------------------------------------

    async def send(self, app: AppConfig, socket_id: SocketId, frame: bytes) -> bool:
        """One frame to one socket, counted like broadcasts: every frame is a billed message on AWS."""
        sent = await self.sender.send(app.id, socket_id, frame)
        if sent:
            self.count_sent(app.id, 1, len(frame))
        return sent

    async def broadcast(
        self, app: AppConfig, sockets: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> int:
        if not sockets:
            return 0
        delivery = await self.sender.broadcast(app.id, sockets, frame, except_socket)
        self.count_sent(app.id, delivery.sent, delivery.sent * len(frame), delivery.failed)
        if delivery.gone:
            await self.drop_gone(app, delivery.gone)
        return delivery.sent

    def count_sent(self, app_id: AppId, frames: int, nbytes: int, failed: int = 0) -> None:
        """Frames written to sockets: what API Gateway bills per message, and the throughput metrics; and
        the frames the sender gave up on (it logged why)."""
        self.metrics.count("ws_messages_sent", app_id, frames)
        self.metrics.count("ws_bytes_sent", app_id, nbytes)
        if failed:
            self.metrics.count("ws_messages_failed", app_id, failed)

    async def broadcast_channel(
        self,
        app: AppConfig,
        channel: ChannelName,
        frame: bytes,
        except_socket: SocketId | None = None,
        *,
        version: int = 0,
    ) -> int:
        """A frame to every subscriber of ``channel``: through the sender when it knows them itself
        (``ChannelBroadcaster``, which also orders counts by ``version``), else to the list the store holds."""
        if self._channel_sender is None:
            return await self.broadcast(app, await self.store.sockets(app.id, channel), frame, except_socket)
        delivery = await self._channel_sender.broadcast_channel(app.id, channel, frame, except_socket, version=version)
        self.count_sent(app.id, delivery.sent, delivery.sent * len(frame), delivery.failed)
        return delivery.sent

    @contextlib.contextmanager
    def joining(self, app: AppConfig, socket_id: SocketId, channel: ChannelName) -> Iterator[None]:
        """While a join is in flight, the channel's broadcasts to the joiner wait (only a sender that broadcasts
        channels from its own index needs it: ``ChannelBroadcaster.hold_channel`` says why)."""
        sender = self._channel_sender
        if sender is None:
            yield
            return
        sender.hold_channel(app.id, socket_id, channel)
        try:
            yield
        finally:
            sender.release_channel(app.id, socket_id, channel)

    async def publish(
        self, app: AppConfig, channels: Collection[str], event: str, data: Any, except_socket: SocketId | None = None
    ) -> None:
        """Server-side publish (REST): one encoded frame per channel, the same bytes to every subscriber."""
        self.observer.api_message(app.id, channels, event, data, except_socket)
        for channel in channels:
            await channel_ops.publish_to_channel(self, app, channel, event, data, except_socket)

    async def terminate_user(self, app: AppConfig, user_id: str) -> int:
        """Close every signed-in connection of a user (4009: pusher-js does not reconnect)."""
        sockets = await self.store.user_sockets(app.id, user_ops.as_user_id(user_id))
        for socket_id in sockets:
            await self.sender.disconnect(app.id, socket_id, 4009, "Connection terminated by the app")
        return len(sockets)

    async def app_by_id(self, app_id: str) -> AppConfig | None:
        return await self.apps.by_id(AppId(app_id))
