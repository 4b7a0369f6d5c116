"""What ordered frames cost a client: subscribe and client-event latency, emulated Lambda path vs local server.

Issue #20 puts an SQS FIFO queue between API Gateway's ``$default`` and the message function (docs/aws.md
"Frames of one connection in order"). This measures, with real pusher-js clients (``tests/e2e/js``):

- ``subscribe``: ``pusher.subscribe`` of a fresh private channel to ``pusher:subscription_succeeded``;
- ``client event``: one ``channel.trigger`` by a sender to its arrival at another member (both in the same
  Node process, so one clock);
- ``burst of 8``: eight client events in one tick to the last arrival, and whether every burst arrived in
  order.

Emulated AWS calls are local, so these are lower bounds of AWS's; docs/aws.md adds the AWS-side figures.
Run: ``.venv/bin/python -m bench.frame_order [--rounds 200] [--unordered] [--local]``: the emulator with the
ordered frames queue (the default deployment), ``--unordered`` also with ``-c ordered_frames=false`` ($default
invoking the function directly), ``--local`` also the local server, ``--stream`` also with
``-c ordered_frames=stream`` (the frames table's DynamoDB stream).
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

from bench.welcome_latency import ROOT, wait_ready
from local_server.ports import free_port
from tests.e2e.jsdriver import App, NodeDriver

APP: dict[str, object] = {
    "id": "order-bench",
    "key": "order-bench-key",
    "secret": "order-bench-secret",
    "enable_client_messages": True,
    "max_client_events_per_second": 100_000,
}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):7.1f} ms  p99 {p99:7.1f} ms  max {ordered[-1]:7.1f} ms  (n={len(ordered)})"


def start(emulate: bool, context: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {"port": port, "metrics_port": None, "apps": [APP]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(config, out)
    args = [sys.executable, "-m", "local_server", "--config", out.name]
    if emulate:
        args += ["--emulate-lambda", "--sweep-interval", "0"]
        for value in context:
            args += ["--cdk-context", value]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


async def measure(label: str, emulate: bool, rounds: int, warmup: int, context: tuple[str, ...] = ()) -> None:
    proc, port = start(emulate, context)
    app = App(str(APP["id"]), str(APP["key"]), str(APP["secret"]))
    js = await NodeDriver.start()
    try:
        await wait_ready(port, timeout=300)
        alice = await js.client("alice", app, port, connected=False)
        await alice.expect_state("connected", timeout=30)
        bob = await js.client("bob", app, port, connected=False)
        await bob.expect_state("connected", timeout=30)
        await js.subscribe_rounds("alice", "private-warm", warmup, timeout=30)
        subscribe = await js.subscribe_rounds("alice", "private-fresh", rounds, timeout=30)
        for client in (alice, bob):
            await client.subscribe("private-bench", succeed=False)
            await client.expect("pusher:subscription_succeeded", "private-bench", timeout=30)
        await js.burst_rounds("alice", "bob", "private-bench", "client-warm", rounds=warmup, count=1, timeout=30)
        single = await js.burst_rounds(
            "alice", "bob", "private-bench", "client-one", rounds=rounds, count=1, timeout=30
        )
        burst = await js.burst_rounds(
            "alice", "bob", "private-bench", "client-burst", rounds=rounds // 4, count=8, timeout=30
        )
        print(f"{label}:")
        print(f"  subscribe          {summary(subscribe['timings'])}")
        print(f"  client event       {summary(single['timings'])}")
        if burst["failed"] is None:
            print(f"  burst of 8 (last)  {summary(burst['timings'])}  all {rounds // 4} in order")
        else:
            done = len(burst["timings"])
            print(f"  burst of 8         {done} bursts in order, then one arrived as {burst['order']}")
    finally:
        await js.close()
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--unordered", action="store_true", help="the emulator with ordered_frames=false too")
    parser.add_argument("--local", action="store_true", help="measure the local server as well")
    parser.add_argument("--stream", action="store_true", help="the emulator with ordered_frames=stream too")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    asyncio.run(measure("emulated Lambda, ordered frames (SQS FIFO)", True, args.rounds, args.warmup))
    if args.stream:
        context = ("ordered_frames=stream",)
        label = "emulated Lambda, ordered frames (DynamoDB stream)"
        asyncio.run(measure(label, True, args.rounds, args.warmup, context))
    if args.unordered:
        context = ("ordered_frames=false",)
        asyncio.run(measure("emulated Lambda, $default invoking directly", True, args.rounds, args.warmup, context))
    if args.local:
        asyncio.run(measure("local server", False, args.rounds, args.warmup))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
