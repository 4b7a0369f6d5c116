"""What each operation costs on the Lambda path, measured in the emulator, and what that makes per month.

Runs scenarios against ``--emulate-lambda`` and reads the emulator's meter (``GET /@emulator/stats``)
between them: Lambda invocations, CPU (µs of the handler thread: boto3 and the engine, not moto) and billed
duration; API Gateway messages (32 KB units) and connection time; DynamoDB request units (by item size,
cost/meter.py) and SQS requests. Then prices the scenarios of docs/cost.md from those per-operation figures
at list prices, beside the Pusher plan that fits. (``python -m cost --measure`` is the report's own run.)

Run: ``.venv/bin/python -m bench.handler_cost [--clients 40] [--fanout 300]``. Figures are from a shared,
noisy machine (printed load average); emulated calls are local, so durations are lower bounds of AWS's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pusher

from bench.welcome_latency import start, wait_ready
from cost.model import MEMORY_MB  # the one copy of the stack's memory sizes
from shared.auth import sign_channel

APP = {"id": "12345", "key": "bench-key", "secret": "bench-secret"}


def kind(function_name: str) -> str:
    """``sockless-HttpApiFunction`` (the emulator names functions after the template's logical ids)
    -> ``http_api``, the stack's name for it."""
    construct = re.sub(r"Function([0-9A-F]{8})?$", "", function_name.split("-", 1)[1])
    return re.sub(r"(?<!^)([A-Z])", r"_\1", construct).lower()


PRICE = {  # US East list prices, docs/cost.md
    "ws_message": 1.00 / 1e6,
    "connection_minute": 0.25 / 1e6,
    "http_request": 1.00 / 1e6,
    "lambda_request": 0.20 / 1e6,
    "gb_second": 0.0000133334,  # arm64
    "wru": 0.625 / 1e6,
    "rru": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,
}
PUSHER_PLANS = [  # (name, $/month, connections, messages/day)
    ("Startup", 49, 500, 1_000_000),
    ("Pro", 99, 2_000, 4_000_000),
    ("Business", 299, 5_000, 10_000_000),
    ("Premium", 499, 10_000, 20_000_000),
    ("Growth", 699, 15_000, 40_000_000),
]


@dataclass
class Cost:
    """Billable units of one operation (per occurrence)."""

    lambda_requests: float = 0
    gb_seconds: float = 0
    cpu_us: float = 0
    ws_messages: float = 0
    http_requests: float = 0
    rru: float = 0
    wru: float = 0
    sqs_requests: float = 0

    def dollars(self) -> float:
        return (
            self.lambda_requests * PRICE["lambda_request"]
            + self.gb_seconds * PRICE["gb_second"]
            + self.ws_messages * PRICE["ws_message"]
            + self.http_requests * PRICE["http_request"]
            + self.rru * PRICE["rru"]
            + self.wru * PRICE["wru"]
            + self.sqs_requests * PRICE["sqs_request"]
        )


def delta(before: dict[str, Any], after: dict[str, Any], count: int) -> Cost:
    """Per-operation cost between two meter readings covering ``count`` operations."""

    def diff(section: str, key: str) -> dict[str, float]:
        old, new = before[section].get(key, {}), after[section].get(key, {})
        return {k: new.get(k, 0) - old.get(k, 0) for k in new}

    wall = diff("lambda", "wall_seconds")
    gb_s = sum(seconds * MEMORY_MB[kind(name)] / 1024 for name, seconds in wall.items())
    units = {k: v - before["meter"]["units"].get(k, 0) for k, v in after["meter"]["units"].items()}
    counts = {k: v - before["meter"]["counts"].get(k, 0) for k, v in after["meter"]["counts"].items()}
    # SQS requests of the operations, not the event source mapping's polling.
    sqs = units.get("sqs_standard_request", 0) - counts.get("sqs:ReceiveMessage", 0)
    return Cost(
        lambda_requests=sum(diff("lambda", "invocations").values()) / count,
        gb_seconds=gb_s / count,
        cpu_us=sum(diff("lambda", "cpu_seconds").values()) * 1e6 / count,
        ws_messages=units.get("ws_message", 0) / count,
        http_requests=units.get("http_request", 0) / count,
        rru=units.get("dynamodb_rru", 0) / count,
        wru=units.get("dynamodb_wru", 0) / count,
        sqs_requests=sqs / count,
    )


class Bench:
    def __init__(self, port: int, http: aiohttp.ClientSession) -> None:
        self.port = port
        self.http = http
        self.sdk = pusher.Pusher(
            app_id=APP["id"], key=APP["key"], secret=APP["secret"], host="127.0.0.1", port=port, ssl=False
        )

    async def _read(self) -> dict[str, Any]:
        async with self.http.get(f"http://127.0.0.1:{self.port}/@emulator/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats

    async def stats(self) -> dict[str, Any]:
        """The meter once the emulator is idle (asynchronous invocations finished): no new invocation
        or AWS call for three readings in a row, SQS polling aside."""

        def activity(stats: dict[str, Any]) -> float:
            calls = sum(float(v) for k, v in stats["aws_requests"].items() if k != "ReceiveMessage")
            return sum(float(v) for v in stats["lambda"]["invocations"].values()) + calls

        last, quiet = -1.0, 0
        while quiet < 3:
            await asyncio.sleep(0.25)
            stats = await self._read()
            quiet = quiet + 1 if activity(stats) == last else 0
            last = activity(stats)
        return stats

    async def client(self) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        ws = await self.http.ws_connect(f"ws://127.0.0.1:{self.port}/app/{APP['key']}?protocol=7&client=bench")
        frame = json.loads((await ws.receive(timeout=10)).data)
        return ws, json.loads(frame["data"])["socket_id"]

    async def until(self, ws: aiohttp.ClientWebSocketResponse, event: str) -> None:
        while json.loads((await ws.receive(timeout=30)).data)["event"] != event:
            pass

    async def measure(self, name: str, count: int, action: Callable[[], Awaitable[None]]) -> Cost:
        before = await self.stats()
        await action()
        cost = delta(before, await self.stats(), count)
        print(
            f"  {name:34} {cost.cpu_us:8.0f} µs CPU  {cost.lambda_requests:5.2f} invocations  "
            f"{cost.gb_seconds * 1000:7.2f} GB-ms  {cost.ws_messages:5.2f} WS msgs  "
            f"{cost.rru:5.1f} RRU  {cost.wru:5.1f} WRU  ${cost.dollars() * 1e6:6.2f}/M"
        )
        return cost


async def run(clients: int, fanout_size: int) -> dict[str, Cost]:
    proc, port = start(True, apps=[{**APP, "enable_client_messages": True, "max_client_events_per_second": 10_000}])
    costs: dict[str, Cost] = {}
    try:
        await wait_ready(port)
        # No connection limit: every WebSocket holds one (aiohttp's default caps a session at 100).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            bench = Bench(port, http)
            warm = [await bench.client() for _ in range(16)]  # every emulated container built once
            for ws, _ in warm:
                await ws.close()
            print(f"per operation (load average {os.getloadavg()[0]:.1f}; CPU: the handler thread only, not")
            print("  the sender's post threads; Lambda bills the duration, shown as GB-ms at the CDK memory sizes):")
            sockets: list[tuple[aiohttp.ClientWebSocketResponse, str]] = []

            async def connect() -> None:
                sockets.extend([await bench.client() for _ in range(clients)])

            costs["connect"] = await bench.measure("connect ($connect + welcome)", clients, connect)

            async def subscribe() -> None:
                for ws, socket_id in sockets:
                    auth = f"{APP['key']}:{sign_channel(APP['secret'], socket_id, 'private-bench')}"
                    await ws.send_json(
                        {"event": "pusher:subscribe", "data": {"channel": "private-bench", "auth": auth}}
                    )
                    await bench.until(ws, "pusher_internal:subscription_succeeded")

            costs["subscribe"] = await bench.measure("subscribe (private)", clients, subscribe)

            async def ping() -> None:
                for ws, _ in sockets:
                    await ws.send_json({"event": "pusher:ping", "data": {}})
                    await bench.until(ws, "pusher:pong")

            costs["ping"] = await bench.measure("pusher:ping -> pong", clients, ping)
            sender, _ = sockets[0]

            witness, _ = sockets[1]

            async def client_events() -> None:
                for n in range(clients):  # one at a time: each is delivered before the next is sent
                    await sender.send_json({"event": "client-n", "channel": "private-bench", "data": {"n": n}})
                    await bench.until(witness, "client-n")

            costs["client_event"] = await bench.measure(
                f"client event (to {clients - 1} others)", clients, client_events
            )

            async def triggers() -> None:
                for n in range(clients):
                    await asyncio.to_thread(bench.sdk.trigger, "private-bench", "n", {"n": n})

            costs["trigger"] = await bench.measure(f"REST trigger (to {clients} sockets)", clients, triggers)

            async def disconnect() -> None:
                for ws, _ in sockets:
                    await ws.close()

            costs["disconnect"] = await bench.measure("disconnect", clients, disconnect)

            big = [await bench.client() for _ in range(fanout_size)]
            for ws, _ in big:
                await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "big"}})
                await bench.until(ws, "pusher_internal:subscription_succeeded")
            before = await bench.stats()
            started = time.perf_counter()
            await asyncio.to_thread(bench.sdk.trigger, "big", "news", {"x": 1})
            await asyncio.gather(*(bench.until(ws, "news") for ws, _ in big))
            elapsed = time.perf_counter() - started
            after = await bench.stats()
            [http_api] = [name for name in after["lambda"]["wall_seconds"] if kind(name) == "http_api"]
            wall = after["lambda"]["wall_seconds"][http_api] - before["lambda"]["wall_seconds"][http_api]
            print(
                f"fan-out: one trigger to {fanout_size} sockets delivered in {elapsed * 1000:.0f} ms; the http_api "
                f"invocation posted {fanout_size / wall:.0f} posts/s"
            )
            for ws, _ in big:
                await ws.close()
    finally:
        proc.terminate()
        proc.wait(120)  # a graceful stop runs every open socket's $disconnect
    return costs


def monthly(costs: dict[str, Cost], connections: int, deliveries_per_day: int, publishes_per_day: int) -> None:
    """A month of the docs/cost.md scenario: always-on connections reconnecting every 2 h (API Gateway's
    cap), deliveries by REST publishes to channels of ``deliveries / publishes`` sockets, no idle pings."""
    days = 30
    reconnects = connections * 12 * days
    fan = deliveries_per_day / publishes_per_day
    trigger = costs["trigger"]
    lines = {
        "connection-minutes": connections * 60 * 24 * days * PRICE["connection_minute"],
        "reconnects (connect + subscribe + disconnect)": reconnects
        * (costs["connect"].dollars() + costs["subscribe"].dollars() + costs["disconnect"].dollars()),
        "deliveries (WS messages)": deliveries_per_day * days * PRICE["ws_message"],
        "publishes (HTTP API + Lambda + DynamoDB)": publishes_per_day
        * days
        * (trigger.dollars() - trigger.ws_messages * PRICE["ws_message"]),
    }
    total = sum(lines.values())
    plan = next((p for p in PUSHER_PLANS if p[2] >= connections and p[3] >= deliveries_per_day), None)
    print(f"\n{connections:,} connections, {deliveries_per_day:,} deliveries/day (~{fan:.0f} per publish):")
    for name, dollars in lines.items():
        print(f"  {name:48} ${dollars:9.2f}")
    pusher_text = f"Pusher {plan[0]} ${plan[1]}" if plan else "Pusher: custom plan"
    print(f"  {'total per month':48} ${total:9.2f}   ({pusher_text})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--fanout", type=int, default=300)
    args = parser.parse_args(argv)
    costs = asyncio.run(run(args.clients, args.fanout))
    monthly(costs, 1_000, 1_000_000, 100_000)
    monthly(costs, 10_000, 10_000_000, 1_000_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
