"""A REST publish to N subscribers on the Lambda path, in the emulator: time from the publish to the last arrival.

Starts the emulator (``--emulate-lambda``: the real handlers, DynamoDB on moto, the management API served by
the emulator), connects N WebSocket clients (aiohttp) and subscribes them to one public channel, then
triggers ``--events`` events through the pusher SDK and prints, per event, the time from the trigger call to
the frame's arrival at the last of the N clients. ``--chunk-size`` is ``aws.fanout_chunk_size``: above it, the
http_api invocation posts the first chunk and hands the others to parallel ``fanout`` invocations (worker
threads of the emulator's one process here, so they share its GIL and the machine's two cores, where AWS
gives each its own CPU share: chunked runs are upper bounds of AWS's).

Run: ``.venv/bin/python -m bench.emulator_fanout [--recipients 1000] [--chunk-size 1000] [--events 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

from bench.handler_cost import APP, Bench
from bench.run import free_port
from bench.welcome_latency import ROOT, wait_ready


def start(chunk_size: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {"port": port, "metrics_port": None, "apps": [APP], "aws": {"fanout_chunk_size": chunk_size}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(config, out)
    args = [sys.executable, "-m", "local_server", "--config", out.name, "--emulate-lambda", "--sweep-interval", "0"]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


async def run(recipients: int, chunk_size: int, events: int) -> list[float]:
    proc, port = start(chunk_size)
    try:
        await wait_ready(port)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            bench = Bench(port, http)
            gate = asyncio.Semaphore(4)  # $connect + welcome are invocations too: do not queue them for long
            url = f"ws://127.0.0.1:{port}/app/{APP['key']}?protocol=7&client=bench"

            async def subscriber() -> aiohttp.ClientWebSocketResponse:
                async with gate:
                    ws = await http.ws_connect(url)
                    await ws.receive(timeout=120)  # pusher:connection_established
                    await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "big"}})
                    await bench.until(ws, "pusher_internal:subscription_succeeded")
                    return ws

            started = time.perf_counter()
            sockets = await asyncio.gather(*(subscriber() for _ in range(recipients)))
            print(f"{recipients} subscribers in {time.perf_counter() - started:.0f} s", flush=True)
            times: list[float] = []
            for n in range(events):
                await bench.stats()  # idle emulator between events
                started = time.perf_counter()
                await asyncio.to_thread(bench.sdk.trigger, "big", "news", {"n": n})
                await asyncio.gather(*(bench.until(ws, "news") for ws in sockets))
                times.append((time.perf_counter() - started) * 1000)
                print(f"  event {n}: last of {recipients} after {times[-1]:.0f} ms", flush=True)
            for ws in sockets:
                await ws.close()
            return times
    finally:
        proc.terminate()
        proc.wait(300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5)
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}; {args.recipients} recipients, chunk size {args.chunk_size}")
    times = asyncio.run(run(args.recipients, args.chunk_size, args.events))
    print(f"publish -> last recipient: median {statistics.median(times):.0f} ms, min {min(times):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
