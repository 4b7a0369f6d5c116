"""``python -m cost --measure``: the per-operation units of the report counted again, by running a sample of
the workload through the emulator (the synthesized stack with the real handlers, ``--emulate-lambda``).

A few connections connect, subscribe to a private channel, join a presence channel, ping (the MOCK route),
send client events, receive REST publishes and disconnect, one operation at a time; the emulator's meter
(cost/meter.py, ``GET /@emulator/stats``) is read once the emulator is quiet after each kind, and the
difference divided by the count is that operation's :class:`cost.model.Op`. ``cost.model.month`` then scales
them to the workload's month as it does the recorded profile. Cold starts are left out of the sample (the
containers are warmed first); the model adds INIT by its own rule. Deliveries are counted apart (one
message each), so the sample's client events and publishes go to a channel of two.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cost.model import LEAN, Op, Stack
from local_server.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = {
    "id": "cost-sample",
    "key": "cost-key",
    "secret": "cost-secret",
    "enable_client_messages": True,
    "max_client_events_per_second": 1000,
}
PAIR = "private-pair"  # two subscribers: where client events and publishes go in the sample


def function_kind(function_name: str) -> str:
    """``sockless-HttpApiFunction`` (the emulator names functions after the template's logical ids) ->
    ``http_api``, the stack's name for it."""
    construct = re.sub(r"Function([0-9A-F]{8})?$", "", function_name.split("-", 1)[-1])
    return re.sub(r"(?<!^)([A-Z])", r"_\1", construct).lower()


def cdk_context(stack: Stack) -> dict[str, str]:
    """The context values of the stack options that change what the functions do (and log)."""
    context = {}
    if stack.log_level != "INFO":
        context["log_level"] = stack.log_level
    if not stack.metrics:
        context["metrics"] = "false"
    if not stack.ordered_frames:
        context["ordered_frames"] = "false"
    elif stack.frames_transport == "stream":
        context["ordered_frames"] = "stream"
    return context


@dataclass
class Reading:
    units: dict[str, float]
    counts: dict[str, float]

    def minus(self, before: Reading) -> Reading:
        return Reading(
            {k: v - before.units.get(k, 0.0) for k, v in self.units.items()},
            {k: v - before.counts.get(k, 0.0) for k, v in self.counts.items()},
        )

    def op(self, count: int, deliveries: float = 0) -> Op:
        """One operation's units, ``deliveries`` messages out (per operation) left to the model's delivery line."""
        u, c = self.units, self.counts
        lambdas: dict[str, tuple[float, float]] = {}
        for key, calls in c.items():
            if key.startswith("invocations:") and calls > 0:
                function = key.split(":", 1)[1]
                ms = c.get(f"billed_ms:{function}", 0.0) / calls
                lambdas[function_kind(function)] = (calls / count, ms)
        http = u.get("http_request", 0.0)
        return Op(
            lambdas,
            ws=max(0.0, u.get("ws_message", 0.0) / count - deliveries),
            http=http / count,
            rru=u.get("dynamodb_rru", 0.0) / count,
            wru=u.get("dynamodb_wru", 0.0) / count,
            # The operations' own requests, not the pollers' empty receives (a standing line).
            sqs=(u.get("sqs_standard_request", 0.0) - c.get("sqs_standard_request_empty_receives", 0.0)) / count,
            sqs_fifo=(u.get("sqs_fifo_request", 0.0) - c.get("sqs_fifo_request_empty_receives", 0.0)) / count,
            logged=(c.get("access_log_lines", 0.0) - http) / count,
            log_bytes=c.get("log_bytes", 0.0) / count,
        )


class Sample:
    """The emulator in a child process, and the clients that drive it."""

    def __init__(self, stack: Stack) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"port": self.port, "metrics_port": None, "apps": [APP]}
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(config, self._config)
        self._config.close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (read back only when the start fails)
        args = [sys.executable, "-m", "local_server", "--config", self._config.name, "--emulate-lambda"]
        args += ["--sweep-interval", "0"]
        for key, value in cdk_context(stack).items():
            args += ["--cdk-context", f"{key}={value}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.http: Any = None

    async def start(self, timeout: float) -> None:
        import aiohttp

        # No connection limit: every WebSocket holds one.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                async with self.http.get(self.url + "/@emulator/stats") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        self._log.seek(0)
        tail = self._log.read()[-3000:].decode(errors="replace")
        raise RuntimeError(f"the emulator did not start in {timeout:.0f} s:\n{tail}")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        self.proc.terminate()
        try:
            await asyncio.to_thread(self.proc.wait, 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        Path(self._config.name).unlink(missing_ok=True)
        self._log.close()

    async def _stats(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/@emulator/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats

    async def reading(self) -> Reading:
        """The meter once the emulator is quiet: no invocation, AWS call (SQS polling aside) or message
        for three readings in a row (asynchronous invocations such as the welcome run after the reply)."""

        def activity(stats: dict[str, Any]) -> float:
            calls = sum(float(v) for k, v in stats["aws_requests"].items() if k != "ReceiveMessage")
            counts = stats["meter"]["counts"]
            return calls + sum(float(v) for k, v in counts.items() if k.startswith("invocations:") or k == "ws_out")

        last, quiet = -1.0, 0
        while True:
            stats = await self._stats()
            busy = stats["meter"]["in_flight"] > 0
            quiet = quiet + 1 if activity(stats) == last and not busy else 0
            last = activity(stats)
            if quiet >= 2:
                meter = stats["meter"]
                return Reading(dict(meter["units"]), dict(meter["counts"]))
            await asyncio.sleep(0.1)

    async def invoked(self, after: float) -> float:
        """Until more than ``after`` invocations finished and none is in flight; returns the count."""
        while True:
            meter = (await self._stats())["meter"]
            done = sum(float(v) for k, v in meter["counts"].items() if k.startswith("invocations:"))
            if done > after and meter["in_flight"] == 0:
                return done
            await asyncio.sleep(0.02)

    async def measure(self, count: int, action: Callable[[], Awaitable[None]], deliveries: float = 0) -> Op:
        before = await self.reading()
        await action()
        return (await self.reading()).minus(before).op(count, deliveries)

    # -- the clients ---------------------------------------------------------------------------------------

    async def client(self) -> tuple[Any, str]:
        ws = await self.http.ws_connect(f"ws://127.0.0.1:{self.port}/app/{APP['key']}?protocol=7&client=cost")
        frame = json.loads((await ws.receive(timeout=30)).data)
        return ws, str(json.loads(frame["data"])["socket_id"])

    @staticmethod
    async def until(ws: Any, event: str) -> None:
        while json.loads((await ws.receive(timeout=30)).data)["event"] != event:
            pass

    async def subscribe(self, ws: Any, socket_id: str, channel: str, user: str | None = None) -> None:
        from shared.auth import sign_channel

        data: dict[str, Any] = {"channel": channel}
        channel_data = json.dumps({"user_id": user}) if user is not None else None
        if channel.startswith(("private-", "presence-")):
            data["auth"] = f"{APP['key']}:{sign_channel(str(APP['secret']), socket_id, channel, channel_data)}"
        if channel_data is not None:
            data["channel_data"] = channel_data
        await ws.send_json({"event": "pusher:subscribe", "data": data})
        await self.until(ws, "pusher_internal:subscription_succeeded")

    async def publish(self, channel: str, name: str, data: str) -> None:
        from shared.debug.creator import trigger_request
        from shared.settings import AppConfig

        request = trigger_request(AppConfig.model_validate(APP), channels=[channel], name=name, data=data)
        url = f"{self.url}{request.path}"
        async with self.http.post(url, params=request.query, data=request.body, headers=request.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"publish answered {response.status}: {await response.text()}")


async def _run(sample: Sample, size: int) -> dict[str, Op]:
    # Every container built once (imports and clients): cold starts are not what the sample measures.
    ws, socket_id = await sample.client()
    await sample.subscribe(ws, socket_id, "private-warm")
    await sample.publish("private-warm", "warm", "{}")
    await sample.until(ws, "warm")
    await ws.close()

    sockets: list[tuple[Any, str]] = []  # connect, subscribe to one private channel, ping, disconnect
    others = [await sample.client() for _ in range(size + 2)]  # presence members, and the pair
    (sender, sender_id), (witness, witness_id) = others[-2:]
    await sample.subscribe(sender, sender_id, PAIR)
    await sample.subscribe(witness, witness_id, PAIR)
    profile: dict[str, Op] = {}

    async def connect() -> None:
        sockets.extend([await sample.client() for _ in range(size)])

    async def subscribe() -> None:
        for ws, socket_id in sockets:
            await sample.subscribe(ws, socket_id, "private-cost")

    async def presence_join() -> None:
        for n, (ws, socket_id) in enumerate(others[:size]):
            await sample.subscribe(ws, socket_id, "presence-cost", user=f"user-{n}")

    async def ping() -> None:
        for ws, _ in sockets:
            await ws.send_json({"event": "pusher:ping", "data": {}})
            await sample.until(ws, "pusher:pong")

    async def client_event() -> None:
        for n in range(size):  # one at a time: each is delivered before the next is sent
            await sender.send_json({"event": "client-n", "channel": PAIR, "data": {"n": n}})
            await sample.until(witness, "client-n")

    async def publish() -> None:
        for n in range(size):
            await sample.publish(PAIR, "news", json.dumps({"n": n}))
            await sample.until(sender, "news")
            await sample.until(witness, "news")

    async def disconnect() -> None:
        done = await sample.invoked(-1)
        for ws, _ in sockets:  # one at a time, as the others: AWS runs each in a container of its own
            await ws.close()
            done = await sample.invoked(done)

    profile["connect"] = await sample.measure(size, connect)
    profile["subscribe"] = await sample.measure(size, subscribe)
    # A join tells the members already there (member_added): deliveries, as the workload counts them.
    profile["presence_join"] = await sample.measure(size, presence_join, deliveries=(size - 1) / 2)
    profile["ping"] = await sample.measure(size, ping)
    profile["client_event"] = await sample.measure(size, client_event, deliveries=1)
    profile["publish"] = await sample.measure(size, publish, deliveries=2)
    profile["disconnect"] = await sample.measure(size, disconnect)  # one private channel each
    for ws, _ in others:
        await ws.close()
    return profile


def measure(stack: Stack = LEAN, size: int = 8, start_timeout: float = 180.0) -> dict[str, Op]:
    """The per-operation profile of ``stack``, measured on a sample of ``size`` connections."""

    async def run() -> dict[str, Op]:
        sample = Sample(stack)
        try:
            await sample.start(start_timeout)
            return await _run(sample, size)
        finally:
            await sample.stop()

    return asyncio.run(run())
