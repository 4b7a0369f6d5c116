"""Cross-node fan-out through Redis: deliveries/s and latency with 1 and 2 nodes, and Redis work per delivery.

    .venv/bin/python -m bench.redis_fanout [--subscribers 1000] [--seconds 5] [--redis redis://127.0.0.1:6379/14]

Setups: one node on the memory store (no Redis at all), one node on Redis, and two nodes on Redis with the
subscribers split between them and the publishes alternating. Redis cost is read from ``INFO commandstats``
around the publishing (commands run inside Lua scripts count one each): commands per delivered frame and per
published event. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis

from bench import loadgen
from bench.loadgen import Publisher, Target, percentile
from bench.run import BENCH_APP, ROOT, free_port, wait_quiet
from bench.wsclient import WsClient


@dataclass
class Setup:
    name: str
    nodes: int
    redis: bool


SETUPS = [Setup("1 node, memory store", 1, False), Setup("1 node, redis", 1, True), Setup("2 nodes, redis", 2, True)]


def start_node(redis_url: str | None, prefix: str) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "metrics_port": None,
        "apps": [BENCH_APP],
        "log_level": "WARNING",
    }
    if redis_url is not None:
        config["store"] = {"driver": "redis", "url": redis_url, "prefix": prefix}
        config["queue"] = {"driver": "redis", "prefix": prefix}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    proc = subprocess.Popen([sys.executable, "-m", "local_server", "--config", f.name], cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("node did not start") from None
            time.sleep(0.05)
    return proc, Target("127.0.0.1", port, proc.pid)


def redis_calls(client: redis.Redis | None) -> int:
    if client is None:
        return 0
    stats: dict[str, dict[str, Any]] = client.info("commandstats")  # type: ignore[assignment]
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


async def open_split(targets: list[Target], subscribers: int, on_frame: Any = None) -> list[WsClient]:
    clients: list[WsClient] = []
    for i, target in enumerate(targets):
        share = subscribers // len(targets) + (1 if i < subscribers % len(targets) else 0)
        clients += await loadgen.open_clients(target, share, on_frame=on_frame)
    return clients


async def throughput(
    targets: list[Target], subscribers: int, seconds: float, calls: Callable[[], int], in_flight: int = 16
) -> dict[str, float]:
    clients = await open_split(targets, subscribers)
    await loadgen.subscribe_all(clients, "fanout")
    frame_size = len(loadgen.fanout_frame())
    for client in clients:
        client.counting = True
    published = 0
    stop = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight * len(targets))) as session:
        publishers = [Publisher(t, session) for t in targets]

        async def loop(n: int) -> None:
            nonlocal published
            while not stop:
                await publishers[n % len(publishers)].publish("fanout", '{"x":1}')
                published += 1

        calls0, t0 = calls(), time.perf_counter()
        tasks = [asyncio.create_task(loop(n)) for n in range(in_flight)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        expected = published * subscribers
        deadline = time.perf_counter() + 30
        while sum(c.nbytes for c in clients) // frame_size < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        t1, calls1 = time.perf_counter(), calls()
    delivered = sum(c.nbytes for c in clients) // frame_size
    loadgen.close_all(clients)
    return {
        "deliveries_per_s": delivered / (t1 - t0),
        "redis_cmds_per_delivery": (calls1 - calls0) / max(delivered, 1),
        "redis_cmds_per_event": (calls1 - calls0) / max(published, 1),
    }


async def latency(targets: list[Target], subscribers: int, rate: float, seconds: float) -> dict[str, float]:
    samples: list[float] = []

    def on_frame(_client: WsClient, payload: bytes, now: float) -> None:
        if payload.startswith(b'{"event":"latency"'):
            samples.append((now - json.loads(json.loads(payload)["data"])["t"]) * 1000)

    clients = await open_split(targets, subscribers, on_frame)
    await loadgen.subscribe_all(clients, "latency")
    async with aiohttp.ClientSession() as session:
        publishers = [Publisher(t, session) for t in targets]
        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(int(seconds * rate)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            data = json.dumps({"t": time.perf_counter()})
            task = asyncio.create_task(publishers[i % len(publishers)].publish("latency", data, name="latency"))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        await asyncio.sleep(0.5)
    loadgen.close_all(clients)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


def run(setup: Setup, redis_url: str, subscribers: int, seconds: float) -> dict[str, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url) if setup.redis else None
    procs = [start_node(redis_url if setup.redis else None, prefix) for _ in range(setup.nodes)]
    targets = [target for _, target in procs]
    try:
        wait_quiet()
        figures = asyncio.run(throughput(targets, subscribers, seconds, lambda: redis_calls(client)))
        figures.update(asyncio.run(latency(targets, subscribers, 20, seconds)))
        return figures
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(20)
        if client is not None:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default=os.environ.get("SOCKLESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    keys = ("deliveries_per_s", "p50_ms", "p99_ms", "redis_cmds_per_delivery", "redis_cmds_per_event")
    rows = []
    for setup in SETUPS:
        figures = run(setup, args.redis, args.subscribers, args.seconds)
        rows.append((setup.name, figures))
        print(setup.name, {k: round(figures[k], 3) for k in keys}, flush=True)
    print(f"\n{args.subscribers} subscribers on one channel, {args.seconds:g} s of publishing per figure\n")
    print("| setup | deliveries/s | latency p50 ms (20 events/s) | p99 ms | Redis cmds/delivery | Redis cmds/event |")
    print("|---|---|---|---|---|---|")
    for name, f in rows:
        print(
            f"| {name} | {f['deliveries_per_s']:,.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} "
            f"| {f['redis_cmds_per_delivery']:.4f} | {f['redis_cmds_per_event']:.1f} |"
        )


if __name__ == "__main__":
    main()
