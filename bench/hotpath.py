"""The server's Python cost per operation, in process, with the kernel left out: a steadier figure than the
socket benchmarks on a busy machine, for telling whether a change to a hot path helps.

    .venv/bin/python -m bench.hotpath [--subscribers 1000] [--rounds 7]

Each figure is the best of ``--rounds`` timed runs of the real code (engine, memory store, REST router with
signature checks, Prometheus metrics, ``WsTransport`` with its cork) over stub asyncio transports that only
count bytes. Figures:

- ``rest_publish_us``: one signed ``POST /apps/{id}/events`` through ``RestApi.handle`` to an empty channel
  (the aiohttp layer in front of it is not included);
- ``delivery_ns``: per subscriber of a REST publish to ``--subscribers`` sockets, cork flush included;
- ``client_event_us``: one client event from a subscriber of a private channel, fanned out to the others;
- ``presence_join_us``: one member joining a presence channel of ``--subscribers`` members;
- ``connect_us``: engine connect + welcome + disconnect of one socket.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from local_server.transport import Cork, WsTransport
from shared.auth.signatures import sign_channel, sign_request
from shared.http_api.base import HttpRequest
from shared.metrics.prometheus import PrometheusMetrics
from shared.sender.local import LocalSender
from shared.services import Services, build_services
from shared.settings import AppConfig, Settings
from shared.types import SocketId

APP = {
    "id": "100001",
    "key": "app-key",
    "secret": "app-secret",
    "enable_client_messages": True,
    "max_presence_members_per_channel": 1_000_000,
}


class CountingTransport:
    """Stands in for an asyncio socket transport: counts what would have been sent."""

    def __init__(self) -> None:
        self.sent = 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


def publish_request(channel: str, data: str = '{"x":1}') -> HttpRequest:
    path = "/apps/100001/events"
    body = json.dumps({"name": "bench", "channel": channel, "data": data}).encode()
    params = {
        "auth_key": "app-key",
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    params["auth_signature"] = sign_request("app-secret", "POST", path, params)
    return HttpRequest(method="POST", path=path, query=params, body=body, ip="127.0.0.1")


class Bench:
    def __init__(self) -> None:
        settings = Settings(apps=(AppConfig.model_validate(APP),))
        self.cork = Cork()
        self.sender = LocalSender(fanout=self.cork.broadcast)  # as local_server.server.create_app wires it
        self.services: Services = build_services(settings, sender=self.sender, metrics=PrometheusMetrics())
        self.app: AppConfig = settings.apps[0]

    async def socket(self) -> SocketId:
        engine = self.services.engine
        connection = await engine.connect(self.app)
        ws = cast(web.WebSocketResponse, None)  # never used: nothing closes in these runs
        transport = WsTransport(ws, cast(asyncio.Transport, CountingTransport()), 0.0, self.cork)
        self.sender.register(connection.socket_id, transport)
        await engine.send(self.app, connection.socket_id, engine.welcome(connection.socket_id))
        return connection.socket_id

    async def subscribed(self, n: int, channel: str) -> list[SocketId]:
        sockets = []
        for _ in range(n):
            socket_id = await self.socket()
            data: dict[str, Any] = {"channel": channel}
            if channel.startswith("private-"):
                data["auth"] = f"app-key:{sign_channel('app-secret', socket_id, channel)}"
            elif channel.startswith("presence-"):
                data.update(self.presence_auth(socket_id, channel, socket_id))
            await self.services.engine.handle(
                self.app, socket_id, json.dumps({"event": "pusher:subscribe", "data": data})
            )
            sockets.append(socket_id)
        self.cork.flush()
        return sockets

    @staticmethod
    def presence_auth(socket_id: str, channel: str, user: str) -> dict[str, str]:
        channel_data = json.dumps({"user_id": user, "user_info": {"name": user}})
        return {
            "auth": f"app-key:{sign_channel('app-secret', socket_id, channel, channel_data)}",
            "channel_data": channel_data,
        }


async def best(rounds: int, repeat: int, body: Callable[[], Awaitable[None]]) -> float:
    """Seconds per call, best of ``rounds`` runs of ``repeat`` calls."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            await body()
        times.append((time.perf_counter() - t0) / repeat)
    return min(times)


async def measure(subscribers: int, rounds: int) -> dict[str, float]:
    bench = Bench()
    rest = bench.services.rest
    engine = bench.services.engine
    app = bench.app
    out: dict[str, float] = {}

    empty = publish_request("empty")

    async def publish_empty() -> None:
        response = await rest.handle(empty)
        assert response.status == 200, response.body

    out["rest_publish_us"] = await best(rounds, 2000, publish_empty) * 1e6

    await bench.subscribed(subscribers, "fanout")
    full = publish_request("fanout")

    async def publish_full() -> None:
        await rest.handle(full)
        bench.cork.flush()

    per_publish = await best(rounds, 20, publish_full)
    out["delivery_ns"] = (per_publish - out["rest_publish_us"] / 1e6) / subscribers * 1e9

    senders = await bench.subscribed(subscribers, "private-chat")
    event = json.dumps({"event": "client-bench", "channel": "private-chat", "data": {"t": 1}})

    async def client_event() -> None:
        await engine.handle(app, senders[0], event)
        bench.cork.flush()

    engine.limiter = engine.connection_limiter = (
        _Unlimited()
    )  # the app's 10 events/s would refuse all but the first few
    out["client_event_us"] = await best(rounds, 20, client_event) * 1e6

    await bench.subscribed(subscribers, "presence-room")
    joiners = [await bench.socket() for _ in range(rounds * 20)]
    it = iter(joiners)

    async def join() -> None:
        socket_id = next(it)
        data = {"channel": "presence-room", **bench.presence_auth(socket_id, "presence-room", f"u-{socket_id}")}
        await engine.handle(app, socket_id, json.dumps({"event": "pusher:subscribe", "data": data}))
        bench.cork.flush()

    out["presence_join_us"] = await best(rounds, 20, join) * 1e6

    async def connect() -> None:
        socket_id = await bench.socket()
        bench.cork.flush()
        bench.sender.unregister(socket_id)
        await engine.disconnect(app, socket_id)

    out["connect_us"] = await best(rounds, 500, connect) * 1e6
    return out


class _Unlimited:
    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def check_health(self) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.subscribers, args.rounds))
    for key, value in figures.items():
        print(f"{key:<20} {value:10.2f}")


if __name__ == "__main__":
    main()
