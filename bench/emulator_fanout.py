"""A REST publish to N subscribers on the Lambda path, in the emulator: time from the publish to the last arrival,
and whose CPU it took.

Starts the emulator (``--emulate-lambda``: the real handlers, DynamoDB on moto, the management API served by
the emulator), connects N WebSocket clients (aiohttp, ``--connect-concurrency`` at a time) and subscribes them
to one public channel, then triggers ``--events`` events through the pusher SDK and prints, per event, the
time from the trigger call to the frame's arrival at the last of the N clients. ``--chunk-size`` is
``aws.fanout_chunk_size``: above it, the http_api invocation posts the first chunk and hands the others to
parallel ``fanout`` invocations (worker threads of the emulator's one process here, so they share its GIL and
the machine's two cores, where AWS gives each its own CPU share: chunked runs are upper bounds of AWS's).

Everything runs on this machine's cores, so the time is split by whose CPU it took during the publish
(``/proc/PID/task/*/stat``, threads named by ``py-spy dump``): the *sender* (the HTTP pool threads of the
lean ``@connections`` sender and the handler threads of ``http_api``/``fanout``: what AWS would bill) and
the *emulator's own* cost, which AWS does not run on the function's CPU: its event loop (the emulated API
Gateway: the ``@connections`` endpoint with its IAM check, and the WebSocket frames out), moto, and the N
clients in this process. moto runs in a process of its own and its gate (IAM, the meter) on its callers'
threads (with ``--moto-in-process`` moto too): the emulator counts the CPU both take (``aws_cpu_seconds`` of
``/@emulator/stats``, ``aws_process_cpu_seconds`` the child's part); the gate's is moved from the functions'
executor threads to moto's line. The first event warms the containers and is left out of the CPU split.

Each client is one socket in this process and one in the emulator: the soft limit on open files is raised
to what N needs (``resource.setrlimit``; the emulator inherits it).

Run: ``.venv/bin/python -m bench.emulator_fanout [--recipients 1000] [--chunk-size 1000] [--events 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import pusher

from bench.handler_cost import APP, Bench, kind
from bench.welcome_latency import ROOT, wait_ready
from local_server.ports import free_port

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
EXECUTORS = "function: executor threads (boto3 calls)"
MOTO = "emulator: moto (its process, its gate on the executors)"
PY_SPY_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "([^"]*)"', re.MULTILINE)


def raise_fd_limit(recipients: int) -> None:
    """Room for every client's socket (here and in the emulator) plus the processes' own files."""
    needed = recipients + 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"{recipients} clients need {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    print(f"open files: soft limit raised from {soft} to {needed}")


def start(chunk_size: int, concurrency: int, context: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {"port": port, "metrics_port": None, "apps": [APP], "aws": {"fanout_chunk_size": chunk_size}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(config, out)
    args = [sys.executable, "-m", "local_server", "--config", out.name, "--emulate-lambda", "--sweep-interval", "0"]
    args += ["--lambda-concurrency", str(concurrency)]
    for item in context:
        args += ["--cdk-context", item]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


# -- whose CPU -----------------------------------------------------------------------------------------------


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        result[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return result


def thread_names(pid: int, names: dict[int, str]) -> None:
    """Add the Python names of ``pid``'s threads (``py-spy dump``; pauses the process for a moment)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    names.update((int(tid), name) for tid, name in PY_SPY_THREAD.findall(out))


def profile(pid: int, out: str) -> subprocess.Popen[bytes]:
    """``py-spy record`` of the emulator, every thread, as raw collapsed stacks (until SIGINT)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    args = [spy, "record", "--pid", str(pid), "--threads", "--rate", "250", "--format", "raw", "--output", out]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def role(name: str | None) -> str:
    """Whose CPU a thread of the emulator is. During a publish only ``http_api`` and ``fanout`` run: the
    executor threads of the containers' event loops (boto3's DynamoDB calls, ``asyncio.to_thread``) are theirs.
    """
    if name is None:
        return "emulator: other threads"
    if name.startswith("http1"):
        return "function: @connections pool (lean sender)"
    if name.startswith(("HttpApiFunction", "FanoutFunction")):
        return "function: handler threads"
    if name.startswith(("dynamodb", "asyncio")):
        return EXECUTORS
    if name == "MainThread":
        return "emulator: event loop (@connections, WebSocket out)"
    if name.endswith("(_server_entry)"):
        return MOTO
    return "emulator: other threads"


# -- the run -------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[list[float], dict[str, float], list[float]]:
    proc, port = start(args.chunk_size, args.lambda_concurrency, args.cdk_context)
    names: dict[int, str] = {}
    cpu: dict[str, float] = collections.defaultdict(float)
    sender_busy: list[float] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        await wait_ready(port, timeout=300)  # the first start synthesizes the template
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            bench = Bench(port, http)
            # The trigger returns when the http_api invocation has posted its own chunk (and handed on the others):
            # seconds for 10,000 recipients in the emulator, past the SDK's default 5 s.
            bench.sdk = pusher.Pusher(
                app_id=APP["id"],
                key=APP["key"],
                secret=APP["secret"],
                host="127.0.0.1",
                port=port,
                ssl=False,
                timeout=120,
            )
            gate = asyncio.Semaphore(args.connect_concurrency)
            url = f"ws://127.0.0.1:{port}/app/{APP['key']}?protocol=7&client=bench"
            connected = 0
            started = time.perf_counter()

            async def subscriber() -> aiohttp.ClientWebSocketResponse:
                nonlocal connected
                async with gate:
                    ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=10), max_msg_size=0)
                    await bench.until(ws, "pusher:connection_established")
                    await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "big"}})
                    await bench.until(ws, "pusher_internal:subscription_succeeded")
                connected += 1
                if connected % max(args.recipients // 10, 1) == 0:
                    elapsed = time.perf_counter() - started
                    print(f"  {connected} subscribed after {elapsed:.0f} s ({connected / elapsed:.0f}/s)", flush=True)
                return ws

            sockets = await asyncio.gather(*(subscriber() for _ in range(args.recipients)))
            print(f"{args.recipients} subscribers in {time.perf_counter() - started:.0f} s", flush=True)
            times: list[float] = []
            for n in range(args.events):
                before = await bench.stats()  # idle emulator between events
                threads, mine = thread_cpu(proc.pid), time.process_time()
                started = time.perf_counter()
                await asyncio.to_thread(bench.sdk.trigger, "big", "news", {"n": n})
                await asyncio.gather(*(bench.until(ws, "news") for ws in sockets))
                times.append((time.perf_counter() - started) * 1000)
                spent, mine = thread_cpu(proc.pid), time.process_time() - mine
                after = await bench.stats()
                busy, count = {}, {}
                for f, seconds in after["lambda"]["wall_seconds"].items():
                    if kind(f) in ("http_api", "fanout"):
                        busy[kind(f)] = seconds - before["lambda"]["wall_seconds"].get(f, 0.0)
                        count[kind(f)] = after["lambda"]["invocations"][f] - before["lambda"]["invocations"].get(f, 0)
                line = f"  event {n}: last of {args.recipients} after {times[-1]:.0f} ms; busy (wall)"
                line += ",".join(f" {k} {count[k]} x {v / count[k] * 1e3:.0f} ms" for k, v in busy.items() if count[k])
                print(line, flush=True)
                thread_names(proc.pid, names)
                if n == 0:
                    if args.profile:
                        spy = profile(proc.pid, args.profile)
                    continue  # containers built, connections opened: not the steady state
                sender_busy.append(busy.get("http_api", 0.0) * 1000)
                for tid, seconds in spent.items():
                    cpu[role(names.get(tid))] += seconds - threads.get(tid, 0.0)
                cpu["clients (this process)"] += mine
                # moto's gate runs on its callers' threads (the functions' executors), moto itself there too or
                # in its own process (``--moto-in-process`` or not): its CPU is counted apart, all of it.
                served = after.get("aws_cpu_seconds", 0.0) - before.get("aws_cpu_seconds", 0.0)
                child = after.get("aws_process_cpu_seconds", 0.0) - before.get("aws_process_cpu_seconds", 0.0)
                cpu[MOTO] += served
                cpu[EXECUTORS] -= served - child
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            measured = max(args.events - 1, 1)
            return times, {k: v / measured for k, v in cpu.items()}, sender_busy
    finally:
        proc.kill()  # not terminate: a graceful stop would run every open socket's $disconnect
        proc.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--connect-concurrency", type=int, default=32, help="clients connecting at once")
    parser.add_argument("--lambda-concurrency", type=int, default=8, help="the emulator's containers per function")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record the emulator after the first event")
    parser.add_argument(
        "--cdk-context", action="append", default=[], metavar="KEY=VALUE", help="passed on to the emulator"
    )
    args = parser.parse_args()
    raise_fd_limit(args.recipients)
    print(f"load {os.getloadavg()[0]:.1f}; {args.recipients} recipients, chunk size {args.chunk_size}")
    times, cpu, busy = asyncio.run(run(args))
    print(f"publish -> last recipient: median {statistics.median(times):.0f} ms, min {min(times):.0f} ms")
    if cpu:
        print(f"CPU per publish, events 1-{args.events - 1} (ms; all on this machine's cores):")
        for name, seconds in sorted(cpu.items()):
            print(f"  {name:52} {seconds * 1000:7.0f}")
        print(f"  http_api invocation busy (median): {statistics.median(busy):.0f} ms")
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
