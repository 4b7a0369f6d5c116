"""A real ``Engine`` over the memory drivers and the real ``LocalSender``, with recording transports.

The transport is the boundary where the local server would write to a socket, so recording frames there
exercises everything else for real. The webhook queue and the rate limiter run on a manual clock, so the
3 s webhook delays, the rejoin debounce and the rate-limit windows are checked without sleeping.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from shared.apps.config import ConfigAppStore
from shared.auth.signatures import sign_channel, sign_user
from shared.debug.tap import DebugTap, TapMetrics
from shared.engine import Engine
from shared.engine.observer import NULL_OBSERVER
from shared.limits.memory import MemoryRateLimiter
from shared.metrics.base import NullMetrics
from shared.protocol.channels import ChannelType, channel_type
from shared.sender.local import LocalSender
from shared.settings import AppConfig, RateLimit
from shared.store.memory import MemoryChannelStore
from shared.types import SocketId
from shared.webhooks.memory import MemoryWebhookQueue


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingTransport:
    """What a socket would have received: every frame written, and the close code if it was closed."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def write(self, frame: bytes) -> None:
        self.raw.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def decode_data(frame: dict[str, Any]) -> Any:
    """``data`` of a server frame: a JSON string for every event but ``pusher:error`` (an object)."""
    data = frame.get("data")
    return json.loads(data) if isinstance(data, str) else data


class Client:
    """One connected socket, driven the way pusher-js drives it."""

    def __init__(self, harness: Harness, app: AppConfig, socket_id: SocketId, transport: RecordingTransport) -> None:
        self.harness = harness
        self.app = app
        self.socket_id = socket_id
        self.transport = transport
        self._seen = 0

    # -- sending --------------------------------------------------------------------------------------

    async def send_raw(self, raw: str | bytes) -> None:
        await self.harness.engine.handle(self.app, self.socket_id, raw)

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        msg: dict[str, Any] = {"event": event}
        if data is not None:
            msg["data"] = data
        if channel is not None:
            msg["channel"] = channel
        await self.send_raw(json.dumps(msg))

    async def subscribe(self, channel: str, **data: Any) -> None:
        await self.send("pusher:subscribe", {"channel": channel, **data})

    async def join(self, channel: str, user_id: str | None = None, user_info: Any = None) -> None:
        """Subscribe with the auth a correct app backend would return for this channel."""
        kind = channel_type(channel)
        if kind is ChannelType.PRESENCE and user_id is not None:
            channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
            sig = sign_channel(self.app.secret, self.socket_id, channel, channel_data)
            await self.subscribe(channel, auth=f"{self.app.key}:{sig}", channel_data=channel_data)
        elif kind in (ChannelType.PRIVATE, ChannelType.ENCRYPTED, ChannelType.PRESENCE):
            sig = sign_channel(self.app.secret, self.socket_id, channel)
            await self.subscribe(channel, auth=f"{self.app.key}:{sig}")
        else:
            await self.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.send("pusher:unsubscribe", {"channel": channel})

    async def signin(self, user: dict[str, Any]) -> str:
        user_data = json.dumps(user)
        sig = sign_user(self.app.secret, self.socket_id, user_data)
        await self.send("pusher:signin", {"auth": f"{self.app.key}:{sig}", "user_data": user_data})
        return user_data

    async def trigger(self, event: str, channel: str, data: Any) -> None:
        await self.send(event, data, channel)

    async def disconnect(self) -> None:
        """What the local server does when the socket closes."""
        self.harness.sender.unregister(self.socket_id)
        await self.harness.engine.disconnect(self.app, self.socket_id)

    # -- receiving ------------------------------------------------------------------------------------

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.transport.raw]

    def new(self) -> list[dict[str, Any]]:
        """Frames received since the last call."""
        frames = self.frames[self._seen :]
        self._seen = len(self.transport.raw)
        return frames

    def events(self) -> list[str]:
        return [f["event"] for f in self.frames]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == event]

    def errors(self) -> list[dict[str, Any]]:
        """``data`` of every ``pusher:error`` received."""
        return [decode_data(f) for f in self.of("pusher:error")]


class Harness:
    def __init__(
        self,
        *apps: AppConfig,
        webhook_delay_seconds: float = 3.0,
        tap: DebugTap | None = None,
        connections_per_ip: RateLimit | None = None,
    ) -> None:
        """``tap``: the debug console's, wired as ``build_services`` wires it."""
        self.clock = ManualClock()
        self.store = MemoryChannelStore()
        self.sender = LocalSender()
        self.queue = MemoryWebhookQueue(clock=self.clock)
        self.limiter = MemoryRateLimiter(clock=self.clock)
        self.apps = ConfigAppStore(apps)
        self.engine = Engine(
            apps=self.apps,
            store=self.store,
            sender=self.sender,
            webhooks=self.queue,
            limiter=self.limiter,
            webhook_delay_seconds=webhook_delay_seconds,
            connections_per_ip=connections_per_ip,
            metrics=TapMetrics(NullMetrics(), tap) if tap is not None else None,
            observer=tap if tap is not None else NULL_OBSERVER,
        )
        self._ids = itertools.count(1)

    async def connect(
        self, key: str, protocol: str | None = "7", origin: str | None = None, address: str | None = None
    ) -> Client:
        """Authorize, record and welcome a connection like the local server's WebSocket handler."""
        app = await self.engine.authorize_connection(key, protocol, origin, address)
        n = next(self._ids)
        connection = await self.engine.connect(app, SocketId(f"{n}.{n}"))
        transport = RecordingTransport()
        self.sender.register(connection.socket_id, transport)
        transport.write(self.engine.welcome(connection.socket_id))
        return Client(self, app, connection.socket_id, transport)

    async def ready_webhooks(self) -> list[dict[str, Any]]:
        """Webhook events visible in the queue now, in push order; they are acknowledged (gone) afterwards."""
        jobs = await self.queue.receive(1000, 0.0)
        await self.queue.ack(jobs)
        return [job.event for job in jobs]
