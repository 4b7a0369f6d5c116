"""How long ``python -m local_server --emulate-lambda`` takes to start: from starting the process to its public
port accepting connections (what every emulator test waits for before its first step), and the CPU seconds
the process spent until then (what a busy machine changes least).

With ``--reference DIR`` the emulator of another checkout (``git worktree add DIR main``: the previous state)
starts in turns with this one, so both see the same load. The template is synthesized (or taken from each
checkout's cache) before the first timed start. Run:
``.venv/bin/python -m bench.emulator_startup [--runs 5] [--reference DIR]``. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.emulator_speed import ROOT, cpu_seconds, start, stop
from bench.welcome_latency import wait_ready


async def one(checkout: Path) -> tuple[float, float]:
    """(seconds to ready, CPU seconds to ready) of one start."""
    started = time.perf_counter()
    proc, port = start([], checkout)
    try:
        await wait_ready(port, timeout=180)
        return time.perf_counter() - started, cpu_seconds(proc.pid)
    finally:
        stop(proc)


def synthesize(checkout: Path) -> None:
    code = "from local_server.emulator import synth; synth.template({})"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, check=True)


def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    seconds, cpu = [s for s, _ in samples], [c for _, c in samples]
    return {
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2),
        "cpu_s": [round(c, 2) for c in cpu],
        "median_cpu_s": round(statistics.median(cpu), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference", type=Path, default=None, help="a checkout to start in turns with this one")
    args = parser.parse_args()
    checkouts = {"this": ROOT} | ({"reference": args.reference.resolve()} if args.reference else {})
    for checkout in checkouts.values():
        synthesize(checkout)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for name, checkout in checkouts.items():
            samples[name].append(await one(checkout))
    results: dict[str, Any] = {"load_average": [load_before, os.getloadavg()]}
    results |= {name: summary(runs) for name, runs in samples.items()}
    if args.reference:
        results["ratio_median_s"] = round(results["this"]["median_s"] / results["reference"]["median_s"], 2)
        results["ratio_median_cpu_s"] = round(results["this"]["median_cpu_s"] / results["reference"]["median_cpu_s"], 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
