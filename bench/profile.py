"""Profile the sockless server (py-spy, sampling the real process) while one bench scenario runs against it.

    .venv/bin/python -m bench.profile fanout [--subscribers 1000] [--server sockless-redis] [--out F] [--top 30]

Scenarios: fanout, latency, presence, client, idle. Writes py-spy's collapsed stacks to ``--out`` (feed them to
any flame-graph tool) and prints the functions with the most samples, by own time and including callees.
The server runs pinned to core 0 and the generator to core 1, as in ``bench.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.run import start


def summarize(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        names = [re.sub(r" \(/.*?/(site-packages/|main/)?", " (", frame) for frame in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    lines = [f"{total} samples", "-- own time"]
    lines += [f"{100 * n / total:5.1f}% {name}" for name, n in own.most_common(top)]
    lines += ["-- including callees"]
    lines += [f"{100 * n / total:5.1f}% {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("fanout", "latency", "presence", "client", "idle"))
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", default="/tmp/sockless-profile.txt")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--server", default="sockless", help="a bench.run server kind; on a cluster, node 0")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    os.sched_setaffinity(0, {1})
    stop, target = start(args.server)
    try:
        options = ["--format", "raw", "--rate", "500", "--nonblocking", "--idle", "-o", args.out]
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(target.nodes[0].pid), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        n = args.subscribers
        scenarios: dict[str, Callable[[], Coroutine[Any, Any, loadgen.Result]]] = {
            "fanout": lambda: loadgen.fanout(target, n, args.seconds),
            "latency": lambda: loadgen.latency(target, n, 20, args.seconds),
            "presence": lambda: loadgen.presence(target, 500, 200),
            "client": lambda: loadgen.client_events(target, 499, 100),
            "idle": lambda: loadgen.idle(target, n),
        }
        result = asyncio.run(scenarios[args.scenario]())
        recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
        recorder.wait(30)
    finally:
        stop()
    print(result.scenario, {k: round(v, 2) for k, v in result.figures.items()})
    print(summarize(Path(args.out), args.top))


if __name__ == "__main__":
    main()
