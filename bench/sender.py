"""The ``@connections`` sender: CPU per delivery and posts/s of the lean signed sender against boto3, same run.

Both post the same frame to N connectionIds of a minimal management endpoint (``endpoint``: a raw asyncio
server in its own process that answers every request ``200`` with an empty body, over HTTP or TLS, after
``--delay`` ms if asked), so what is measured is the sender's own work. CPU is the sender process's
(``time.process_time``: every thread, user + system), wall time is from the first post to the last answer.
The endpoint's own CPU per request is printed too (warm-up included): on this machine it shares the cores
with the sender, and when it costs as much as the sender it halves the wall rate either can reach.

- ``lean``: ``ApiGatewaySender`` as Lambda runs it (SigV4 signer, ``--pool`` keep-alive HTTP/1.1 connections
  driven by epoll in one worker thread, shared/sender/management.py and shared/http1.py).
- ``boto3``: what the sender did before (and what any boto3 code does): ``post_to_connection`` of one
  ``apigatewaymanagementapi`` client from a 32-thread pool (``max_pool_connections`` 32, no botocore retries).

``--share 0.579`` runs each measurement in a child process capped by a cgroup-v1 CPU quota of that share of
one core (Lambda gives a function CPU in proportion to memory: 1,769 MB is one vCPU, so 1,024 MB is 0.579):
the posts/s figure is then measured, not scaled, and the child's CPU use (cores) and the periods the quota
throttled it tell whether the share was the limit. Without the quota, ``posts/s at share`` is
``share / CPU per post``, the rate a CPU-bound sender reaches when latency is hidden by concurrency.
``--delay`` models the round trip to API Gateway: with ``--pool`` requests in flight, no sender exceeds
``pool / delay`` posts/s. ``--nice -10`` runs the endpoint and the children ahead of the machine's other work
(root only), so a loaded machine measures what a quiet one would.

Run: ``.venv/bin/python -m bench.sender [--posts 4000] [--tls] [--share 0.579] [--delay MS] [--nice N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from local_server.ports import free_port
from shared.http1 import header_value

ROOT = Path(__file__).resolve().parent.parent
FRAME = b'{"event":"price","channel":"ticker","data":"{\\"symbol\\":\\"ACME\\",\\"price\\":101.25}"}'
REGION = "eu-west-1"
LAMBDA_VCPU_MB = 1769  # Lambda: 1,769 MB of memory is one vCPU
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/json\r\n\r\n"

# -- the endpoint ------------------------------------------------------------------------------------------


class _Endpoint(asyncio.Protocol):
    """Answers each complete request (headers + Content-Length body) with 200, keep-alive."""

    delay = 0.0  # seconds before each batch of answers (the round trip to API Gateway)

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        answers = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = int(header_value(bytes(buffer[:end]), b"content-length") or 0)
            if len(buffer) < end + 4 + length:
                break
            del buffer[: end + 4 + length]
            answers += 1
        if answers and self.transport is not None:
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._answer, answers)
            else:
                self._answer(answers)

    def _answer(self, answers: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(OK * answers)


def serve(port: int, delay: float, cert: str | None, key: str | None) -> None:
    """``python -m bench.sender endpoint PORT DELAY [CERT KEY]``: the endpoint, until killed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    _Endpoint.delay = delay
    context = None
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Endpoint, "127.0.0.1", port, ssl=context, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def endpoint(tls: bool, delay: float = 0.0, nice: int = 0) -> Iterator[tuple[str, str | None, int]]:
    """A running endpoint: its base URL (with the stage path), with TLS the CA file to trust, and its pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "bench.sender", "endpoint", str(port), str(delay)]
        cafile = None
        if tls:
            cafile, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cafile,
                 "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                check=True, capture_output=True,
            )  # fmt: skip
            args += [cafile, key]
        proc = subprocess.Popen(args, cwd=ROOT, preexec_fn=lambda: os.nice(nice) and None)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/prod", cafile, proc.pid
        finally:
            proc.kill()
            proc.wait()


# -- the two senders ---------------------------------------------------------------------------------------


def connection_ids(n: int) -> list[str]:
    return [f"Lc{i:08d}AbCdEfGh=" for i in range(n)]


async def run_lean(url: str, cafile: str | None, posts: int, warmup: int, pool: int) -> dict[str, float]:
    from shared.sender.apigateway import ApiGatewaySender, FanoutChunk
    from shared.sender.management import ManagementApi
    from shared.sigv4 import Credentials
    from shared.types import AppId, SocketId

    credentials = Credentials("ASIABENCH", "bench/secret+key", "IQoJb3JpZ2luX2VjE" + "x" * 600)  # Lambda-sized
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    api = ManagementApi(url, lambda: credentials, region=REGION, pool_size=pool, ssl_context=context)
    sender = ApiGatewaySender(None, api=api, concurrency=pool)  # type: ignore[arg-type]  # chunks carry their ids

    def chunk(ids: list[str]) -> FanoutChunk:
        return FanoutChunk(AppId("1"), FRAME, tuple(SocketId(f"{i}.1") for i in range(len(ids))), tuple(ids))

    await sender.deliver(chunk(connection_ids(max(warmup, pool))))  # opens the pool's connections
    work = chunk(connection_ids(posts))
    cpu, wall = time.process_time(), time.perf_counter()
    delivery = await sender.deliver(work)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await sender.close()
    assert delivery.sent == posts, delivery
    return {"cpu": cpu, "wall": wall}


def run_boto3(url: str, cafile: str | None, posts: int, warmup: int) -> dict[str, float]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="ASIABENCH",
        aws_secret_access_key="bench/secret+key",
        aws_session_token="IQoJb3JpZ2luX2VjE" + "x" * 600,
        region_name=REGION,
    )
    client = session.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        verify=cafile if cafile else True,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=32),
    )
    pool = ThreadPoolExecutor(32)

    async def post_all(ids: list[str]) -> None:
        loop = asyncio.get_running_loop()

        def post(cid: str) -> None:
            client.post_to_connection(ConnectionId=cid, Data=FRAME)

        await asyncio.gather(*(loop.run_in_executor(pool, post, cid) for cid in ids))

    async def main() -> dict[str, float]:
        await post_all(connection_ids(warmup))
        ids = connection_ids(posts)
        cpu, wall = time.process_time(), time.perf_counter()
        await post_all(ids)
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}

    try:
        return asyncio.run(main())
    finally:
        pool.shutdown()


def measure(kind: str, url: str, cafile: str | None, posts: int, pool: int) -> dict[str, float]:
    warmup = min(posts, 500)
    if kind == "lean":
        return asyncio.run(run_lean(url, cafile, posts, warmup, pool))
    return run_boto3(url, cafile, posts, warmup)


# -- CPU share ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cpu_cgroup(share: float) -> Iterator[Path]:
    """A cgroup-v1 CPU group capped at ``share`` of one core (CFS quota over a 100 ms period)."""
    group = CGROUP_CPU / f"sockless-bench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(round(100_000 * share)))
        yield group
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def throttled(group: Path | None) -> int:
    """Periods in which the group's quota stopped it so far."""
    if group is None:
        return 0
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat.get("nr_throttled", 0))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_in_child(
    kind: str, target: tuple[str, str | None, int], posts: int, pool: int, group: Path | None, nice: int
) -> dict[str, float]:
    url, cafile, endpoint_pid = target

    def enter() -> None:  # runs in the child before exec: the whole child lives in the group
        os.nice(nice)
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    args = [sys.executable, "-m", "bench.sender", "child", kind, url, cafile or "-", str(posts), str(pool)]
    server, periods = process_cpu(endpoint_pid), throttled(group)
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, preexec_fn=enter)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["endpoint_cpu"] = process_cpu(endpoint_pid) - server  # the warm-up's requests too
    figures["throttled"] = throttled(group) - periods
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["endpoint"]:
        serve(int(argv[1]), float(argv[2]), *(argv[3:5] if len(argv) >= 5 else (None, None)))
        return 0
    if argv[:1] == ["child"]:
        _, kind, origin, ca, posts, pool = argv
        print(json.dumps(measure(kind, origin, None if ca == "-" else ca, int(posts), int(pool))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--tls", action="store_true", help="HTTPS to the endpoint (as to execute-api)")
    parser.add_argument("--share", type=float, default=None, help="CPU quota (fraction of a core), e.g. 0.579")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool", type=int, default=64, help="the lean sender's connections (requests in flight)")
    parser.add_argument("--delay", type=float, default=0.0, metavar="MS", help="the endpoint answers after this")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the endpoint and the children")
    args = parser.parse_args(argv)
    share = args.share if args.share is not None else 1024 / LAMBDA_VCPU_MB
    quota = f"{args.share:.3f} core" if args.share else "none"
    transport = "TLS" if args.tls else "plain HTTP"
    print(
        f"load {os.getloadavg()[0]:.2f}; {args.posts} posts per run, best of {args.runs}; {transport}; quota {quota};"
        f" lean pool {args.pool}; endpoint delay {args.delay:g} ms; nice {args.nice}"
    )
    results: dict[str, list[dict[str, float]]] = {}
    with endpoint(args.tls, args.delay / 1000, args.nice) as target, contextlib.ExitStack() as stack:
        group = stack.enter_context(cpu_cgroup(args.share)) if args.share else None
        for kind in ("lean", "boto3"):
            results[kind] = [
                measure_in_child(kind, target, args.posts, args.pool, group, args.nice) for _ in range(args.runs)
            ]
    warmup = min(args.posts, 500)
    header = f"{'sender':8} {'CPU/post':>10} {'wall posts/s':>13} {'posts/s at ' + format(share, '.3f') + ' core':>20}"
    print(header + f" {'cores used':>10} {'throttled':>9} {'endpoint CPU/request':>21}")
    best: dict[str, dict[str, float]] = {}
    for kind, runs in results.items():
        best[kind] = low = min(runs, key=lambda r: r["cpu"])  # CPU: the least disturbed run
        fast = min(runs, key=lambda r: r["wall"])  # wall rate: the fastest run (all of its figures below)
        per_post = low["cpu"] / args.posts
        at_share = args.posts / fast["wall"] if args.share else share / per_post
        print(
            f"{kind:8} {per_post * 1e6:8.1f} us {args.posts / fast['wall']:13.0f} {at_share:20.0f}"
            f" {fast['cpu'] / fast['wall']:10.2f} {fast['throttled']:9.0f}"
            f" {fast['endpoint_cpu'] / (args.posts + warmup) * 1e6:18.1f} us"
        )
    lean, boto = best["lean"], best["boto3"]
    print(f"lean/boto3: CPU per post {lean['cpu'] / boto['cpu']:.3f}x")
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
