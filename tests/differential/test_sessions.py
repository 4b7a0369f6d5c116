"""Both paths answer alike: the same scripted session against the local server and the emulator.

One script — connects, subscriptions to every channel type (public, private, presence, cache,
private-encrypted), client events, REST calls (triggers, queries, errors), refusals, unsubscribes and
closes — runs against the local server, then against the emulator (the synthesized stack, IAM enforced).
What each client receives after each step, each REST answer and the webhooks delivered must be the same,
once the values that differ by nature are normalized: socket ids (by order of appearance), encrypted
payloads (random nonces), webhook times. The differences API Gateway imposes (docs/aws.md "What differs
from the local server on AWS") are kept out of the script: close codes after the handshake, concurrent
handling of one connection's frames (each step waits for its answers), server pings.

The frames of one step are compared per channel (order across channels is not defined), and the
local run is the reference: after each step its frames are collected until the server is quiet, and
the emulator's run then waits for the same number of frames per client (its invocations take longer)
before comparing, plus a short grace for any extra frame.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pusher
import pytest

from local_server.emulator import synth
from tests.serverproc import ServerProcess
from tests.webhooks.support import Receiver

pytestmark = pytest.mark.e2e

APP: dict[str, Any] = {
    "id": "424242",
    "key": "diff-key",
    "secret": "diff-secret",
    "enable_client_messages": True,
    "enable_user_authentication": True,
    "enable_subscription_count": True,
}
QUIET = 0.4  # the local server is quiet this long after a step: its answers are all in
ENCRYPTION_KEY = "r+6UJ6mPyWLGc7JOKvaSxDkkb3H+gLMJTtHXSHxmqXU="  # base64 of 32 bytes, for private-encrypted-


def sign(message: str) -> str:
    return hmac.new(APP["secret"].encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass
class Client:
    ws: aiohttp.ClientWebSocketResponse
    socket_id: str = ""
    frames: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    def auth(self, channel: str, channel_data: str | None = None) -> str:
        message = f"{self.socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
        return f"{APP['key']}:{sign(message)}"


# The script: (step, arguments). Each step is run by Session.step on either server.
SCRIPT: list[tuple[str, tuple[Any, ...]]] = [
    ("connect", ("alice",)),
    ("connect", ("bob",)),
    ("subscribe", ("alice", "news")),
    ("subscribe", ("bob", "news")),
    ("trigger", ("news", "headline", {"title": "hello"}, None)),
    ("trigger", ("news", "headline", {"title": "not to alice"}, "alice")),
    ("subscribe", ("alice", "private-room")),
    ("subscribe_forged", ("bob", "private-room")),
    ("subscribe", ("bob", "private-room")),
    ("client_event", ("alice", "private-room", "client-typing", {"on": True})),
    ("client_event", ("alice", "news", "client-typing", {"on": True})),
    ("subscribe", ("alice", "presence-lobby", "u-alice")),
    ("subscribe", ("bob", "presence-lobby", "u-bob")),
    ("rest", ("users_info", "presence-lobby")),
    ("rest", ("channel_info", "presence-lobby", ["user_count", "subscription_count"])),
    ("rest", ("channels_info", "presence-", ["user_count"])),
    ("rest", ("channel_info", "news", ["user_count"])),
    ("subscribe", ("alice", "cache-weather")),
    ("trigger", ("cache-weather", "forecast", {"sky": "clear"}, None)),
    ("subscribe", ("bob", "cache-weather")),
    ("subscribe", ("alice", "private-encrypted-vault")),
    ("trigger", ("private-encrypted-vault", "secret", {"code": 7}, None)),
    ("raw", ("alice", "not json")),
    ("raw", ("alice", json.dumps({"event": "pusher:subscribe", "data": {"channel": "bad channel!"}}))),
    ("trigger_batch", ([("news", "one", {"n": 1}), ("private-room", "two", {"n": 2})],)),
    ("unsubscribe", ("bob", "presence-lobby")),
    ("rest", ("users_info", "presence-lobby")),
    ("unsubscribe", ("alice", "news")),
    ("rest", ("channel_info", "news", ["subscription_count"])),
    ("close", ("bob",)),
    ("close", ("alice",)),
]


class Session:
    def __init__(self, server: ServerProcess, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.clients: dict[str, Client] = {}
        self.sdk = pusher.Pusher(
            app_id=APP["id"],
            key=APP["key"],
            secret=APP["secret"],
            host="127.0.0.1",
            port=server.port,
            ssl=False,
            encryption_master_key_base64=ENCRYPTION_KEY,
        )

    async def step(self, kind: str, args: tuple[Any, ...]) -> Any:
        """Run one step; the REST answer (status and body) when it is a REST call."""
        if kind == "connect":
            url = f"{self.server.ws_url}/app/{APP['key']}?protocol=7&client=js&version=8.4.0"
            client = self.clients[args[0]] = Client(await self.http.ws_connect(url))
            client.reader = asyncio.create_task(client.read())
            while not client.frames:
                await asyncio.sleep(0.01)
            client.socket_id = json.loads(client.frames[0]["data"])["socket_id"]
            return None
        if kind in ("subscribe", "subscribe_forged"):
            client, channel = self.clients[args[0]], args[1]
            data: dict[str, Any] = {"channel": channel}
            if channel.startswith("presence-"):
                channel_data = json.dumps({"user_id": args[2], "user_info": {"name": args[2]}})
                data.update(channel_data=channel_data, auth=client.auth(channel, channel_data))
            elif channel.startswith("private-"):
                data["auth"] = client.auth(channel)
            if kind == "subscribe_forged":
                data["auth"] = f"{APP['key']}:{'0' * 64}"
            await client.ws.send_str(json.dumps({"event": "pusher:subscribe", "data": data}))
            return None
        if kind == "unsubscribe":
            message = {"event": "pusher:unsubscribe", "data": {"channel": args[1]}}
            await self.clients[args[0]].ws.send_str(json.dumps(message))
            return None
        if kind == "client_event":
            frame = {"event": args[2], "channel": args[1], "data": args[3]}
            await self.clients[args[0]].ws.send_str(json.dumps(frame))
            return None
        if kind == "raw":
            await self.clients[args[0]].ws.send_str(args[1])
            return None
        if kind == "close":
            await self.clients[args[0]].ws.close()
            return None
        return await asyncio.to_thread(self._rest, kind, args)

    def _rest(self, kind: str, args: tuple[Any, ...]) -> Any:
        try:
            if kind == "trigger":
                channel, name, data, excluded = args
                socket_id = self.clients[excluded].socket_id if excluded else None
                return self.sdk.trigger(channel, name, data, socket_id)
            if kind == "trigger_batch":
                return self.sdk.trigger_batch([{"channel": c, "name": n, "data": json.dumps(d)} for c, n, d in args[0]])
            if kind == "rest":
                method, *rest = args
                if method == "channels_info":
                    return self.sdk.channels_info(prefix_filter=rest[0], attributes=rest[1])
                if method == "channel_info":
                    return self.sdk.channel_info(rest[0], attributes=rest[1])
                return getattr(self.sdk, method)(*rest)
        except pusher.errors.PusherError as exc:  # the status and message are what the SDK user sees
            return {"error": type(exc).__name__, "message": str(exc)}
        raise AssertionError(kind)

    def counts(self) -> dict[str, int]:
        return {name: len(client.frames) for name, client in self.clients.items()}

    async def quiet(self) -> None:
        """Until no client got a frame for QUIET seconds (the reference run)."""
        while True:
            before = self.counts()
            await asyncio.sleep(QUIET)
            if self.counts() == before:
                return

    async def reach(self, counts: dict[str, int], timeout: float = 20.0) -> None:
        """Until every client has at least ``counts`` frames (the emulator's run), then a short grace."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(len(self.clients[n].frames) < c for n, c in counts.items() if n in self.clients):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(QUIET / 2)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.ws.close()
            if client.reader is not None:
                await asyncio.gather(client.reader, return_exceptions=True)


def normalized(value: Any, ids: dict[str, str]) -> Any:
    """Socket ids by order of appearance; encrypted payloads and times reduced to their shape."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("ciphertext", "nonce"):
                out[key] = "<random>"
            elif key in ("time_ms", "timestamp"):
                out[key] = "<time>"
            else:
                out[key] = normalized(item, ids)
        return out
    if isinstance(value, list):
        return [normalized(item, ids) for item in value]
    if isinstance(value, str):
        if value.startswith("{") or value.startswith("["):
            try:
                return normalized(json.loads(value), ids)
            except ValueError:
                pass
        for socket_id in re.findall(r"\d+\.\d+", value):
            ids.setdefault(socket_id, f"<socket {len(ids) + 1}>")
            value = value.replace(socket_id, ids[socket_id])
    return value


def by_channel(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A client's frames of one step grouped by channel, each channel's in the order received: the protocol
    orders the frames of one channel, not those of different channels (a closing socket's channels are left
    one after the other, in no defined order)."""
    return sorted(frames, key=lambda frame: str(frame.get("channel", "")))


@dataclass
class Transcript:
    steps: list[dict[str, Any]]
    webhooks: Counter[str]


async def replay(server: ServerProcess, receiver: Receiver, reference: Transcript | None) -> Transcript:
    ids: dict[str, str] = {}
    steps = []
    async with aiohttp.ClientSession() as http:
        session = Session(server, http)
        try:
            for index, (kind, args) in enumerate(SCRIPT):
                seen = session.counts()
                answer = await session.step(kind, args)
                if reference is None:
                    await session.quiet()
                else:
                    target = reference.steps[index]["counts"]
                    await session.reach({n: seen.get(n, 0) + c for n, c in target.items()})
                received = {n: c.frames[seen.get(n, 0) :] for n, c in session.clients.items()}
                steps.append(
                    {
                        "step": f"{kind} {args}",
                        "counts": {n: len(f) for n, f in received.items()},
                        "frames": normalized({n: by_channel(f) for n, f in received.items() if f}, ids),
                        "answer": normalized(answer, ids),
                    }
                )
        finally:
            await session.close()
    expected = sum(reference.webhooks.values()) if reference is not None else None
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        events = Counter(
            json.dumps(
                normalized({k: v for k, v in e.items() if k != "data" or e["name"] != "client_event"}, ids),
                sort_keys=True,
            )
            for e in receiver.events()
        )
        done = sum(events.values()) >= expected if expected is not None else False
        if done or asyncio.get_running_loop().time() > deadline:
            break
        if expected is None:
            await asyncio.sleep(3.0)  # the local server's vacated/member_removed wait its delay
            expected = len(receiver.events())
            continue
        await asyncio.sleep(0.1)
    return Transcript(steps, events)


@pytest.fixture(scope="module")
def activity_timeout() -> int:
    """Synthesizes before the emulator starts (its start-up must not include the synth) and gives the local
    server the deployed functions' ``activity_timeout`` (540 s, docs/cost.md "Pings"): the one setting in which
    the stack deliberately departs from the local server's default, announced in every welcome."""
    resources = synth.template()[0]["Resources"]
    timeouts = {
        r["Properties"]["Environment"]["Variables"]["SOCKLESS_ACTIVITY_TIMEOUT"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and "SOCKLESS_ACTIVITY_TIMEOUT" in str(r["Properties"])
    }
    assert len(timeouts) == 1, timeouts
    return int(timeouts.pop())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = await Receiver().start()
    try:
        yield hooks
    finally:
        await hooks.stop()


def config(receiver: Receiver, activity_timeout: int) -> dict[str, Any]:
    app = {**APP, "webhooks": [{"url": receiver.url()}]}
    return {
        "apps": [app],
        "webhooks": {"delay_seconds": 1.0},
        "shutdown_grace_seconds": 1,
        "activity_timeout": activity_timeout,
    }


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.cleanup()


async def test_the_local_server_and_the_emulator_answer_a_session_alike(
    servers: list[ServerProcess], activity_timeout: int
) -> None:
    local_hooks, emulated_hooks = await Receiver().start(), await Receiver().start()
    try:
        local = ServerProcess(config(local_hooks, activity_timeout)).start()
        servers.append(local)
        reference = await replay(local, local_hooks, None)
        emulated = ServerProcess(
            config(emulated_hooks, activity_timeout), args=("--emulate-lambda", "--sweep-interval", "0")
        ).start(timeout=120)
        servers.append(emulated)
        transcript = await replay(emulated, emulated_hooks, reference)
    finally:
        await local_hooks.stop()
        await emulated_hooks.stop()
    for ours, theirs in zip(reference.steps, transcript.steps, strict=True):
        assert theirs == ours, ours["step"]
    assert transcript.webhooks == reference.webhooks
    assert sum(reference.webhooks.values()) > 10  # the session did produce webhooks
