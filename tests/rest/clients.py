"""Clients for the REST tests: an independent request signer, a raw WebSocket client, and the Node SDK runner.

The signer is written here from docs/sources.md#rest-api-and-request-signing rather than imported from
``shared.auth``, so a bug in the server's signing code cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.serverproc import ROOT

NODE_SDK_SCRIPT = Path(__file__).resolve().parent / "node_sdk.mjs"
FRAME_TIMEOUT = 5.0


@dataclass(frozen=True)
class Creds:
    id: str
    key: str
    secret: str

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Creds:
        return cls(str(config["id"]), str(config["key"]), str(config["secret"]))


def hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_query(
    method: str,
    path: str,
    *,
    key: str,
    secret: str,
    params: Mapping[str, str] | None = None,
    body: bytes = b"",
    timestamp: int | None = None,
    body_md5: bool | None = None,
) -> dict[str, str]:
    """Query parameters for a Pusher-signed request; ``body_md5`` defaults to "when the body is not empty".

    ``params`` may override the auth parameters themselves (to sign a wrong ``auth_version``, say).
    """
    query = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": "1.0",
        **(params or {}),
    }
    if body_md5 if body_md5 is not None else bool(body):
        query["body_md5"] = hashlib.md5(body).hexdigest()
    to_sign = "&".join(f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in query.items()))
    query["auth_signature"] = hmac_hex(secret, f"{method.upper()}\n{path}\n{to_sign}")
    return query


def signed_url(base: str, method: str, path: str, creds: Creds, **kwargs: Any) -> str:
    return f"{base}{path}?{urlencode(signed_query(method, path, key=creds.key, secret=creds.secret, **kwargs))}"


async def rest(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    creds: Creds,
    *,
    body: Any = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """A correctly signed request; ``body`` is JSON-encoded unless it is already bytes."""
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    url = signed_url(base, method, path, creds, params=params, body=raw)
    async with session.request(method, url, data=raw, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json(content_type=None)


class WsClient:
    """A raw protocol-7 WebSocket client: no library between the test and the frames the server sends.

    Frames read while waiting for something else (a subscription ack, a pong) are kept, in order, for
    :meth:`next_event`, so nothing the server sent is ever skipped unseen.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, socket_id: str, creds: Creds) -> None:
        self.ws = ws
        self.socket_id = socket_id
        self.creds = creds
        self._pending: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, ws_base: str, creds: Creds) -> WsClient:
        ws = await session.ws_connect(f"{ws_base}/app/{creds.key}?protocol=7&client=js&version=8.6.0&flash=false")
        msg = await ws.receive(timeout=FRAME_TIMEOUT)
        welcome = json.loads(msg.data)
        assert welcome["event"] == "pusher:connection_established", welcome
        return cls(ws, json.loads(welcome["data"])["socket_id"], creds)

    async def _read(self, timeout: float) -> dict[str, Any]:
        """The next frame off the wire, leaving out subscription-count updates (sent whenever counts change)."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed: {msg.type.name} {msg.data!r} {msg.extra!r}")
            frame: dict[str, Any] = json.loads(msg.data)
            if frame["event"] != "pusher_internal:subscription_count":
                return frame

    async def _wait_for(self, event: str, channel: str | None, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        for index, frame in enumerate(self._pending):
            if frame["event"] == event and frame.get("channel") == channel:
                return self._pending.pop(index)
        while True:
            frame = await self._read(timeout)
            if frame["event"] == "pusher:error" or frame["event"] == "pusher:subscription_error":
                raise AssertionError(f"server refused: {frame}")
            if frame["event"] == event and frame.get("channel") == channel:
                return frame
            self._pending.append(frame)

    async def send(self, event: str, data: Any) -> None:
        await self.ws.send_str(json.dumps({"event": event, "data": data}))

    async def next_event(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        return await self._read(timeout)

    async def expect_event(self, channel: str, event: str, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next event must be exactly this one: anything else arriving first is a failure."""
        frame = await self.next_event(timeout)
        assert (frame.get("channel"), frame["event"]) == (channel, event), frame
        return frame

    async def sync(self) -> None:
        """Round-trip a ping: the server handles a socket's frames in order, so all earlier ones are done."""
        await self.send("pusher:ping", {})
        await self._wait_for("pusher:pong", None)

    async def subscribe(self, channel: str, *, user_id: str | None = None, user_info: Any = None) -> dict[str, Any]:
        """Subscribe (signing private/presence auth with the app secret); return the success frame."""
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
            data["channel_data"] = channel_data
            sig = hmac_hex(self.creds.secret, f"{self.socket_id}:{channel}:{channel_data}")
            data["auth"] = f"{self.creds.key}:{sig}"
        elif channel.startswith("private-"):
            data["auth"] = f"{self.creds.key}:{hmac_hex(self.creds.secret, f'{self.socket_id}:{channel}')}"
        await self.send("pusher:subscribe", data)
        frame = await self._wait_for("pusher_internal:subscription_succeeded", channel)
        if channel.startswith(("cache-", "private-cache-", "presence-cache-")):
            await self.sync()  # a cache channel's first event (cached or cache_miss) follows the ack
        return frame

    async def unsubscribe(self, channel: str) -> None:
        await self.send("pusher:unsubscribe", {"channel": channel})
        await self.sync()

    async def signin(self, user_id: str) -> None:
        user_data = json.dumps({"id": user_id})
        sig = hmac_hex(self.creds.secret, f"{self.socket_id}::user::{user_data}")
        await self.send("pusher:signin", {"auth": f"{self.creds.key}:{sig}", "user_data": user_data})
        await self._wait_for("pusher:signin_success", None)

    async def closed(self, timeout: float = FRAME_TIMEOUT) -> int | None:
        """Wait for the server to close the socket (frames before the close are ignored); the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    return int(msg.data)  # the code in the server's close frame
                if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


def run_node_sdk(port: int, creds: Creds, calls: list[dict[str, Any]], timeout: float = 30) -> list[dict[str, Any]]:
    """Run ``calls`` through the Node ``pusher`` SDK; each result is ``{"status", "body"}`` (errors included)."""
    spec = {"port": port, "appId": creds.id, "key": creds.key, "secret": creds.secret, "calls": calls}
    done = subprocess.run(
        ["node", str(NODE_SDK_SCRIPT), json.dumps(spec)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results
