"""What the fault scenarios share: a private ``redis-server``, local-server nodes, a presence member that keeps
the roster it is told and reconnects like pusher-js, and figures read from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from shared.auth import sign_channel, sign_request
from tests.conftest import DEFAULT_APP
from tests.redis.conftest import RedisServer
from tests.serverproc import ServerProcess

APP: dict[str, Any] = DEFAULT_APP
APP_ID: str = APP["id"]
CHANNEL = "presence-room"


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages: every figure here is measured on a shared machine."""
    return [round(x, 1) for x in os.getloadavg()]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_fds(pid: int, port: int) -> dict[str, int]:
    """The process's open TCP sockets, by kind: ``clients`` (accepted on ``port``, its listening socket aside),
    ``outgoing`` (connections it opened: Redis, webhooks), ``other``."""
    inodes: dict[str, tuple[int, int, str]] = {}  # inode -> (local port, remote port, state)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                inodes[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
    kinds = {"clients": 0, "outgoing": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not target.startswith("socket:["):
                continue
            found = inodes.get(target[8:-1])
            if found is None:
                continue
            local, remote, state = found
            if state == "0A":  # LISTEN
                continue
            kinds["clients" if local == port else "outgoing" if remote else "other"] += 1
    return kinds


def spread(values: Iterable[float]) -> dict[str, float]:
    """min / median / max, rounded to 0.1 ms when given seconds."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "min": round(ordered[0], 4),
        "median": round(ordered[len(ordered) // 2], 4),
        "max": round(ordered[-1], 4),
    }


def duplicates(counts: Counter[Any]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


class Rig:
    """The processes of one scenario run, all stopped by :meth:`close`."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sockless-faults-"))
        self.redis: RedisServer | None = None
        self.nodes: list[ServerProcess] = []

    def start_redis(self) -> RedisServer:
        self.redis = RedisServer(self.workdir).start()
        return self.redis

    def start_nodes(
        self, count: int, apps: list[dict[str, Any]], *, store: str = "redis", lease: float | None = None, **extra: Any
    ) -> list[ServerProcess]:
        """``count`` nodes; on ``store="redis"`` they share the rig's Redis (started if needed) as store and
        webhook queue, which makes them a cluster."""
        config: dict[str, Any] = {"apps": apps, **extra}
        if store == "redis":
            redis = self.redis or self.start_redis()
            config["store"] = {"driver": "redis", "url": redis.url, "prefix": "faults"}
            if lease is not None:
                config["store"]["lease_seconds"] = lease
            config["queue"] = {"driver": "redis", "prefix": "faults"}
        started = [ServerProcess(config).start() for _ in range(count)]
        self.nodes += started
        return started

    def close(self) -> None:
        for node in self.nodes:
            node.cleanup()
        if self.redis is not None:
            if self.redis.proc is not None and self.redis.proc.poll() is None:
                self.redis.resume()
            self.redis.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def session() -> aiohttp.ClientSession:
    """A client session without aiohttp's default cap of 100 connections (each WebSocket holds one)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def log_problems(node: ServerProcess) -> dict[str, Any]:
    """ERROR lines and tracebacks in a node's log (bugs, where a refusal was due), with the first few; a log
    with a traceback is kept (its path is in the result) when the rig is cleaned up."""
    output = node.output()
    lines = output.splitlines()
    errors = [line for line in lines if '"level":"ERROR"' in line]
    problems: dict[str, Any] = {
        "error_lines": len(errors),
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
    }
    if errors:
        problems["first_errors"] = [line[:300] for line in errors[:3]]
    if problems["tracebacks"]:
        kept = Path(tempfile.mkstemp(prefix="sockless-faults-", suffix=".log")[1])
        kept.write_text(output)
        problems["log_kept"] = str(kept)
    return problems


def frame_data(frame: dict[str, Any]) -> Any:
    data = frame.get("data")
    return json.loads(data) if isinstance(data, str) and data[:1] in ("{", "[") else data


async def users_on(http: aiohttp.ClientSession, node: ServerProcess, channel: str = CHANNEL) -> list[str]:
    """The channel's members as the node's REST API reports them (``GET .../users``, signed)."""
    path = f"/apps/{APP_ID}/channels/{channel}/users"
    params = {"auth_key": APP["key"], "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
    params["auth_signature"] = sign_request(APP["secret"], "GET", path, params)
    async with http.get(node.url + path, params=params, timeout=aiohttp.ClientTimeout(total=10)) as response:
        body = await response.json()
    assert response.status == 200, body
    return sorted(user["id"] for user in body["users"])


class Member:
    """A Pusher client that stays a member of :data:`CHANNEL` as ``user_id``: it keeps the roster the server
    told it (``subscription_succeeded``, then ``member_added``/``member_removed``) and, like pusher-js,
    reconnects at once after a 4200-range close and after a back-off after 4100-range ones or a failed
    connect; a 4000-range or 4300-range close ends it."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str, user_id: str, *, reconnect: bool = True) -> None:
        self.http = http
        self.ws_url = ws_url
        self.user_id = user_id
        self.reconnect = reconnect
        self.roster: set[str] = set()
        self.joins = 0
        self.closes: list[int | None] = []
        self.removed: list[tuple[float, str]] = []  # (monotonic time, user id) of each member_removed frame
        self.presence_frames: list[str] = []  # what changed the roster, in order (to explain a wrong one)
        self.joined = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Member:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ws is not None:
            await self.ws.close()

    async def _run(self) -> None:
        while True:
            try:
                code = await self._session()
            except (aiohttp.ClientError, OSError, TimeoutError):
                code = None
            self.closes.append(code)
            if not self.reconnect or (code is not None and (4000 <= code < 4100 or code >= 4300)):
                return
            if code is None or code < 4200:
                await asyncio.sleep(1.0)

    async def _session(self) -> int | None:
        self.joined.clear()
        self.presence_frames.append("connect")
        url = f"{self.ws_url}/app/{APP['key']}?protocol=7&client=faults&version=1"
        async with self.http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            self.ws = ws
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                await self._handle(ws, frame)
            return ws.close_code

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        event, data = frame["event"], frame_data(frame)
        if event == "pusher:connection_established":
            channel_data = json.dumps({"user_id": self.user_id, "user_info": {}})
            auth = sign_channel(APP["secret"], data["socket_id"], CHANNEL, channel_data)
            subscribe = {"channel": CHANNEL, "auth": f"{APP['key']}:{auth}", "channel_data": channel_data}
            await ws.send_json({"event": "pusher:subscribe", "data": subscribe})
        elif event == "pusher:ping":
            await ws.send_json({"event": "pusher:pong", "data": {}})
        elif event == "pusher_internal:subscription_succeeded":
            self.presence_frames.append(f"succeeded:{','.join(sorted(data['presence']['ids']))}")
            self.roster = set(data["presence"]["ids"])
            self.joins += 1
            self.joined.set()
        elif event == "pusher_internal:member_added":
            self.presence_frames.append(f"added:{data['user_id']}")
            self.roster.add(str(data["user_id"]))
        elif event == "pusher_internal:member_removed":
            self.presence_frames.append(f"removed:{data['user_id']}")
            self.roster.discard(str(data["user_id"]))
            self.removed.append((time.monotonic(), str(data["user_id"])))


async def until(predicate: Any, timeout: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` (sync, or async when it returns an awaitable) until true; whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
