"""Is the emulator quick enough to use? The four targets of issue #14, measured against ``--emulate-lambda``.

1. ``N`` clients (default 1,000) connect and subscribe to one public channel: seconds until every
   ``pusher_internal:subscription_succeeded`` arrived (target: 30 s for 1,000).
2. One client subscribes to 100 channels at once: seconds until the 100th ``subscription_succeeded``
   (target: 2 s).
3. A batch trigger of 10 events (the Python SDK, signed, through the HTTP API): seconds from the request
   until the subscriber has all 10 (target: 1 s).
4. An unsubscribe: milliseconds from sending ``pusher:unsubscribe`` until the REST API reports the channel
   vacant (target: 100 ms; includes the REST calls' own round trips).

Everything runs on this machine: the clients (raw aiohttp WebSockets, one process), the emulator (API
Gateway, Lambda, moto) — all-in figures. Each scenario also reports the CPU seconds the emulator's process
spent on it (``emulator_cpu_s``: what a busy machine changes least), and ``startup_s`` is the time from
starting the process to its public port accepting connections. Run:
``.venv/bin/python -m bench.emulator_speed [--clients 1000]`` (add ``--emulator-args '--no-iam'`` etc. to
compare options; ``--checkout DIR`` runs the emulator of another checkout, e.g. ``git worktree add DIR main``
for a reference run of the previous state). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pusher

from bench.welcome_latency import wait_ready
from local_server.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
APP = {"id": "12345", "key": "bench-key", "secret": "bench-secret", "max_connections": 100_000}
URL = "ws://127.0.0.1:{port}/app/bench-key?protocol=7&client=js&version=8.4.0&flash=false"


def start(extra: list[str], checkout: Path = ROOT) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {"port": port, "metrics_port": None, "apps": [APP]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(config, out)
    args = [sys.executable, "-m", "local_server", "--config", out.name, "--emulate-lambda", "--sweep-interval", "0"]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen(
        [*args, *extra], cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the emulator, SIGKILL it if it has not exited within a minute."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and of its running children (Linux): with ``--moto-process`` the
    emulator's moto is a child, and its CPU is the emulator's too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return own + sum(cpu_seconds(child) for child in children)


async def receive(ws: aiohttp.ClientWebSocketResponse, event: str, timeout: float = 60) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed while waiting for {event}: {msg}")
        frame: dict[str, Any] = json.loads(msg.data)
        if frame.get("event") == event:
            return frame
        if frame.get("event") == "pusher:error":
            raise RuntimeError(f"pusher:error while waiting for {event}: {frame}")


async def connected(http: aiohttp.ClientSession, port: int) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(URL.format(port=port), max_msg_size=0)
    await receive(ws, "pusher:connection_established")
    return ws


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str) -> None:
    await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
    await receive(ws, "pusher_internal:subscription_succeeded")


async def many_clients(http: aiohttp.ClientSession, port: int, count: int, in_flight: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(in_flight)
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one() -> None:
        async with gate:
            ws = await connected(http, port)
            sockets.append(ws)
            await subscribe(ws, "crowd")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    rate = round(count / elapsed, 1)
    return {"clients": count, "in_flight": in_flight, "seconds": round(elapsed, 2), "per_second": rate}


async def hundred_channels(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    ws = await connected(http, port)
    started = time.perf_counter()
    for n in range(100):
        await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": {"channel": f"many-{n}"}}))
    for _ in range(100):
        await receive(ws, "pusher_internal:subscription_succeeded")
    elapsed = time.perf_counter() - started
    await ws.close()
    return {"seconds": round(elapsed, 3)}


async def batch_trigger(http: aiohttp.ClientSession, port: int, sdk: pusher.Pusher) -> dict[str, Any]:
    ws = await connected(http, port)
    await subscribe(ws, "batch")
    rounds = []
    for round_ in range(5):
        batch = [{"channel": "batch", "name": "tick", "data": json.dumps({"n": n, "r": round_})} for n in range(10)]
        started = time.perf_counter()
        await asyncio.to_thread(sdk.trigger_batch, batch)
        for _ in range(10):
            await receive(ws, "tick", timeout=10)
        rounds.append(time.perf_counter() - started)
    await ws.close()
    return {"seconds": [round(r, 3) for r in rounds], "worst": round(max(rounds), 3)}


async def unsubscribe(http: aiohttp.ClientSession, port: int, sdk: pusher.Pusher) -> dict[str, Any]:
    ws = await connected(http, port)
    rounds = []
    for round_ in range(5):
        channel = f"leave-{round_}"
        await subscribe(ws, channel)
        started = time.perf_counter()
        await ws.send_str(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        while (await asyncio.to_thread(sdk.channel_info, channel))["occupied"]:
            pass
        rounds.append((time.perf_counter() - started) * 1000)
    await ws.close()
    return {"ms": [round(r, 1) for r in rounds], "worst_ms": round(max(rounds), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=50, help="connects under way at once (default 50)")
    parser.add_argument("--emulator-args", default="", help="extra emulator flags, e.g. '--no-iam'")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="run the emulator of this checkout")
    args = parser.parse_args()
    started = time.perf_counter()
    proc, port = start(shlex.split(args.emulator_args), args.checkout.resolve())
    sdk = pusher.Pusher(
        app_id=APP["id"], key=APP["key"], secret=APP["secret"], host="127.0.0.1", port=port, ssl=False, timeout=60
    )
    results: dict[str, Any] = {
        "load_average": os.getloadavg(),
        "emulator_args": args.emulator_args,
        "checkout": str(args.checkout),
    }
    try:
        await wait_ready(port, timeout=180)
        results["startup_s"] = round(time.perf_counter() - started, 2)
        # No connection limit: aiohttp's default (100) would hold the 101st WebSocket until one closes.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            # Warm every function once (cold imports are not what these targets measure).
            warm = await connected(http, port)
            await subscribe(warm, "warm")
            await asyncio.to_thread(sdk.trigger, "warm", "w", {})
            await receive(warm, "w")
            await warm.close()
            scenarios = {
                "subscribe_100_channels": lambda: hundred_channels(http, port),
                "batch_trigger_10": lambda: batch_trigger(http, port, sdk),
                "unsubscribe": lambda: unsubscribe(http, port, sdk),
                "connect_and_subscribe": lambda: many_clients(http, port, args.clients, args.in_flight),
            }
            for name, scenario in scenarios.items():
                cpu = cpu_seconds(proc.pid)
                try:
                    results[name] = await scenario()
                except Exception as exc:  # a failed scenario is a result too (e.g. a 500 from a timed-out function)
                    results[name] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                results[name]["emulator_cpu_s"] = round(cpu_seconds(proc.pid) - cpu, 2)
            results["load_average_after"] = os.getloadavg()
    finally:
        stop(proc)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
