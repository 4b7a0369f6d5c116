"""Time from WebSocket open to ``pusher:connection_established``: emulated Lambda path vs the local server.

On AWS the first frame cannot be posted during ``$connect``; ``$connect`` invokes the ``welcome`` function
asynchronously and it posts as soon as API Gateway has the connection open (docs/aws.md). This measures
what that costs a client, through the emulator (moto, the management API and Lambda Invoke all local):

- ``upgrade``: from starting the handshake to the 101 response (``$connect`` runs in between);
- ``open -> established``: from the 101 to the first frame (the welcome invocation and its post);
- ``total``: what pusher-js waits before it is "connected".

The first ``--warmup`` connections are not counted: they build the emulated containers (cold starts).
Run: ``.venv/bin/python -m bench.welcome_latency [--connections 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from local_server.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
APP: dict[str, object] = {"id": "100001", "key": "app-key", "secret": "app-secret"}


def start(emulate: bool, apps: list[dict[str, object]] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {"port": port, "metrics_port": None, "apps": apps or [APP]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(config, out)
    args = [sys.executable, "-m", "local_server", "--config", out.name]
    if emulate:
        args += ["--emulate-lambda", "--sweep-interval", "0"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


async def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def one(http: aiohttp.ClientSession, port: int) -> tuple[float, float]:
    """(upgrade ms, open -> established ms) for one connection."""
    url = f"ws://127.0.0.1:{port}/app/app-key?protocol=7&client=js&version=8.6.0&flash=false"
    started = time.perf_counter()
    async with http.ws_connect(url) as ws:
        opened = time.perf_counter()
        first = json.loads((await ws.receive(timeout=10)).data)
        established = time.perf_counter()
        assert first["event"] == "pusher:connection_established", first
    return (opened - started) * 1000, (established - opened) * 1000


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms  max {ordered[-1]:6.1f} ms"


async def measure(emulate: bool, connections: int, warmup: int) -> None:
    proc, port = start(emulate)
    try:
        await wait_ready(port)
        async with aiohttp.ClientSession() as http:
            for _ in range(warmup):
                await one(http, port)
            samples = [await one(http, port) for _ in range(connections)]
    finally:
        proc.terminate()
        proc.wait(15)
    name = "emulated Lambda path" if emulate else "local server"
    print(f"{name} ({connections} sequential connections after {warmup} warm-up):")
    print(f"  upgrade               {summary([u for u, _ in samples])}")
    print(f"  open -> established   {summary([e for _, e in samples])}")
    print(f"  total                 {summary([u + e for u, e in samples])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    asyncio.run(measure(True, args.connections, args.warmup))
    asyncio.run(measure(False, args.connections, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
