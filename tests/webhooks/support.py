"""Test tools for webhooks: a real HTTP receiver, a raw Pusher WebSocket client, and both SDKs' validators."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pusher
from aiohttp import web

from tests.conftest import NUMERIC_APP
from tests.serverproc import ROOT

NODE_VALIDATOR = Path(__file__).with_name("validate_webhook.mjs")

# Apps the tests configure: the numeric one (the Python SDK only accepts numeric ids) and a second one.
APP_A: dict[str, Any] = {**NUMERIC_APP, "enable_subscription_count": True}
APP_B: dict[str, Any] = {"id": "67890", "key": "other-key", "secret": "other-secret", "enable_client_messages": True}


@dataclass
class Received:
    """One request the receiver got, with the status it answered."""

    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.payload["events"])


@dataclass
class Receiver:
    """A webhook receiver on a free local port. Per path: scripted statuses (then 200) and a response delay."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        script = self.scripts.get(request.path)
        status = script.pop(0) if script else 200
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Received(time.monotonic(), request.path, headers, body, status))
        delay = self.delays.get(request.path)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def at(self, path: str = "/hook", ok_only: bool = True) -> list[Received]:
        return [r for r in self.requests if r.path == path and (r.status < 300 or not ok_only)]

    def events(self, path: str = "/hook", name: str | None = None) -> list[dict[str, Any]]:
        """Events of the requests answered 2xx at ``path``, optionally of one name."""
        return [e for r in self.at(path) for e in r.events if name is None or e["name"] == name]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                got = [(r.path, r.status, r.body.decode()) for r in self.requests]
                raise AssertionError(f"receiver condition not met within {timeout} s; got {got}")
            await asyncio.sleep(0.02)

    async def wait_events(self, count: int, path: str = "/hook", name: str | None = None, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.events(path, name)) >= count, timeout)


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class PusherSocket:
    """A raw Pusher protocol 7 client over aiohttp, signing its own subscriptions like an auth endpoint would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, app: dict[str, Any], socket_id: str) -> None:
        self.ws = ws
        self.app = app
        self.socket_id = socket_id

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, ws_url: str, app: dict[str, Any]) -> PusherSocket:
        ws = await session.ws_connect(f"{ws_url}/app/{app['key']}?protocol=7&client=test&version=1")
        welcome = json.loads((await ws.receive(timeout=5)).data)
        assert welcome["event"] == "pusher:connection_established", welcome
        return cls(ws, app, json.loads(welcome["data"])["socket_id"])

    async def send(self, event: str, data: Any, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send_str(json.dumps(frame))

    def subscribe_frame(self, channel: str, user_id: str | None = None, user_info: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
            data["channel_data"] = channel_data
            data["auth"] = f"{self.app['key']}:{sign(self.app['secret'], f'{self.socket_id}:{channel}:{channel_data}')}"
        elif channel.startswith("private-"):
            data["auth"] = f"{self.app['key']}:{sign(self.app['secret'], f'{self.socket_id}:{channel}')}"
        return data

    async def subscribe(self, channel: str, user_id: str | None = None, user_info: Any = None) -> None:
        """Subscribe and wait for ``subscription_succeeded``."""
        await self.send("pusher:subscribe", self.subscribe_frame(channel, user_id, user_info))
        await self.expect("pusher_internal:subscription_succeeded", channel)

    async def expect(self, event: str, channel: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frame: dict[str, Any] = json.loads(msg.data)
            assert frame["event"] != "pusher:error", frame
            if frame["event"] == event and (channel is None or frame.get("channel") == channel):
                return frame

    async def close(self) -> None:
        await self.ws.close()


def python_sdk_validates(app: dict[str, Any], request: Received) -> dict[str, Any] | None:
    """The official ``pusher`` Python SDK's webhook validation (key, HMAC and the 5-minute ``time_ms`` check)."""
    client = pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"])
    result: dict[str, Any] | None = client.validate_webhook(
        request.headers.get("x-pusher-key", ""), request.headers.get("x-pusher-signature", ""), request.body.decode()
    )
    return result


def node_sdk_validates(app: dict[str, Any], requests: list[Received]) -> list[dict[str, Any]]:
    """The official Node ``pusher`` SDK's ``webhook({headers, rawBody}).isValid()``, one result per request."""
    payload = {
        "app": {"appId": app["id"], "key": app["key"], "secret": app["secret"]},
        "requests": [{"headers": r.headers, "rawBody": r.body.decode()} for r in requests],
    }
    done = subprocess.run(
        ["node", str(NODE_VALIDATOR)], input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def metric(metrics_port: int, name: str, app_id: str) -> float:
    """A counter from the server's Prometheus endpoint (0 when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'sockless_{name}_total{{app_id="{app_id}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def server_config(apps: list[dict[str, Any]], **webhooks: Any) -> dict[str, Any]:
    """A server config with short webhook delays by default; a short shutdown grace so teardown is quick."""
    return {"apps": apps, "webhooks": {"delay_seconds": 0.3, **webhooks}, "shutdown_grace_seconds": 1}
