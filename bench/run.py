"""Run the benchmark matrix: sockless vs the raw-ceiling server, side by side in one session.

    .venv/bin/python -m bench.run [--scenarios fanout,latency,presence,client,idle] [--seconds 5]

Each server runs pinned to core 0 and this load generator to core 1; before each round the machine's load is
sampled and printed beside the figure, because these machines are noisy. Prints a markdown table.
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
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import loadgen
from bench.loadgen import Result, Target

ROOT = Path(__file__).resolve().parent.parent
BENCH_APP = {
    "id": "app-id",
    "key": "app-key",
    "secret": "app-secret",
    "enable_client_messages": True,
    "max_client_events_per_second": 10_000,
    "max_presence_members_per_channel": 1000,
    "max_connections": None,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_busy(sample: float = 0.5) -> list[float]:
    """Busy percentage of each core over ``sample`` seconds (from /proc/stat)."""

    def read() -> list[tuple[int, int]]:
        out = []
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3].isdigit():
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]
                out.append((sum(values), idle))
        return out

    a = read()
    time.sleep(sample)
    b = read()
    return [100.0 * (1 - (bi - ai) / max(bt - at, 1)) for (at, ai), (bt, bi) in zip(a, b, strict=False)]


def wait_quiet(limit: float = 15.0, patience: float = 10.0) -> str:
    deadline = time.monotonic() + patience
    busy = cpu_busy()
    while max(busy) > limit and time.monotonic() < deadline:
        busy = cpu_busy()
    return "/".join(f"{b:.0f}%" for b in busy)


def start(kind: str) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    if kind == "sockless":
        config = {
            "host": "127.0.0.1",
            "port": port,
            "metrics_port": free_port(),
            "apps": [BENCH_APP],
            "log_level": "WARNING",
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(config, f)
        cmd = [sys.executable, "-m", "local_server", "--config", f.name]
    else:
        cmd = [sys.executable, "-m", "bench.ceiling_server", "--port", str(port)]
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{kind} server did not start on port {port}") from None
            time.sleep(0.05)
    # The python child of taskset is the process to measure; taskset execs, so the pid is the same.
    return proc, Target("127.0.0.1", port, proc.pid)


Scenario = Callable[[Target], Awaitable[Result]]


def scenarios(names: set[str], seconds: float) -> list[tuple[str, Scenario, bool]]:
    """(name, scenario, also run on the ceiling server?)"""
    table: list[tuple[str, Scenario, bool]] = []
    if "fanout" in names:
        for n in (100, 1000, 5000):
            table.append(("fanout", lambda t, n=n: loadgen.fanout(t, n, seconds), True))
    if "latency" in names:
        table.append(("latency", lambda t: loadgen.latency(t, 1000, 20, seconds), True))
        table.append(("latency", lambda t: loadgen.latency(t, 5000, 4, seconds), True))
    if "presence" in names:
        table.append(("presence", lambda t: loadgen.presence(t, 500, 200), False))
    if "client" in names:
        table.append(("client", lambda t: loadgen.client_events(t, 499, 100), False))
    if "idle" in names:
        table.append(("idle", lambda t: loadgen.idle(t, 10_000), True))
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="fanout,latency,presence,client,idle")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    rows = []
    for _name, scenario, with_ceiling in scenarios(set(args.scenarios.split(",")), args.seconds):
        results: dict[str, tuple[Result, str]] = {}
        for kind in ("sockless", "ceiling") if with_ceiling else ("sockless",):
            proc, target = start(kind)
            try:
                load = wait_quiet()
                results[kind] = (asyncio.run(scenario(target)), load)
            finally:
                proc.terminate()
                proc.wait(20)
        ours, load = results["sockless"]
        for key, value in ours.figures.items():
            ceiling = results.get("ceiling")
            ref = ceiling[0].figures.get(key) if ceiling else None
            ratio = f"{value / ref:.2f}" if ref else "-"
            rows.append(
                (
                    ours.scenario,
                    key,
                    f"{value:,.1f}",
                    f"{ref:,.1f}" if ref else "-",
                    ratio,
                    f"{load} / {ceiling[1] if ceiling else '-'}",
                )
            )
            print(f"{ours.scenario:<28} {key:<22} {value:>12,.1f} {ref or 0:>12,.1f} {ratio:>6}", flush=True)
    print("\n| scenario | figure | sockless | ceiling | ratio | load before (cores 0/1) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
