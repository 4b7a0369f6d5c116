"""The ``@connections`` sender: CPU per delivery and posts/s of the lean signed sender against boto3, same run.

Both post the same frame to N connectionIds of a minimal management endpoint (``endpoint``: a raw asyncio
server in its own process that answers every request ``200`` with an empty body, over HTTP or TLS), so what
is measured is the sender's own work. CPU is the sender process's (``time.process_time``: every thread,
user + system), wall time is from the first post to the last answer.

- ``lean``: ``ApiGatewaySender`` as Lambda runs it (SigV4 signer, keep-alive HTTP/1.1 pool of 64 on the
  event loop, shared/sender/management.py).
- ``boto3``: what the sender did before (and what any boto3 code does): ``post_to_connection`` of one
  ``apigatewaymanagementapi`` client from a 32-thread pool (``max_pool_connections`` 32, no botocore retries).

``--share 0.579`` runs each measurement in a child process capped by a cgroup-v1 CPU quota of that share of
one core (Lambda gives a function CPU in proportion to memory: 1,769 MB is one vCPU, so 1,024 MB is 0.579):
the posts/s figure is then measured, not scaled. Without the quota, ``posts/s at share`` is
``share / CPU per post``, the rate a CPU-bound sender reaches when latency is hidden by concurrency.

Run: ``.venv/bin/python -m bench.sender [--posts 4000] [--tls] [--share 0.579]``.
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
            self.transport.write(OK * answers)


def serve(port: int, cert: str | None, key: str | None) -> None:
    """``python -m bench.sender endpoint PORT [CERT KEY]``: the endpoint, until killed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    context = None
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Endpoint, "127.0.0.1", port, ssl=context, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def endpoint(tls: bool) -> Iterator[tuple[str, str | None]]:
    """A running endpoint: its base URL (with the stage path) and, with TLS, the CA file to trust."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "bench.sender", "endpoint", str(port)]
        cafile = None
        if tls:
            cafile, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cafile,
                 "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                check=True, capture_output=True,
            )  # fmt: skip
            args += [cafile, key]
        proc = subprocess.Popen(args, cwd=ROOT)
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
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/prod", cafile
        finally:
            proc.kill()
            proc.wait()


# -- the two senders ---------------------------------------------------------------------------------------


def connection_ids(n: int) -> list[str]:
    return [f"Lc{i:08d}AbCdEfGh=" for i in range(n)]


async def run_lean(url: str, cafile: str | None, posts: int, warmup: int) -> dict[str, float]:
    from shared.sender.apigateway import ApiGatewaySender, FanoutChunk
    from shared.sender.management import ManagementApi
    from shared.sigv4 import Credentials
    from shared.types import AppId, SocketId

    credentials = Credentials("ASIABENCH", "bench/secret+key", "IQoJb3JpZ2luX2VjE" + "x" * 600)  # Lambda-sized
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    api = ManagementApi(url, lambda: credentials, region=REGION, pool_size=64, ssl_context=context)
    sender = ApiGatewaySender(None, api=api)  # type: ignore[arg-type]  # chunks carry their connectionIds

    def chunk(ids: list[str]) -> FanoutChunk:
        return FanoutChunk(AppId("1"), FRAME, tuple(SocketId(f"{i}.1") for i in range(len(ids))), tuple(ids))

    await sender.deliver(chunk(connection_ids(warmup)))  # opens the pool's connections
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


def measure(kind: str, url: str, cafile: str | None, posts: int) -> dict[str, float]:
    warmup = min(posts, 500)
    if kind == "lean":
        return asyncio.run(run_lean(url, cafile, posts, warmup))
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


def measure_in_child(kind: str, url: str, cafile: str | None, posts: int, group: Path | None) -> dict[str, float]:
    def enter() -> None:  # runs in the child before exec: the whole child lives in the group
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    args = [sys.executable, "-m", "bench.sender", "child", kind, url, cafile or "-", str(posts)]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, preexec_fn=enter)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["endpoint"]:
        serve(int(argv[1]), *(argv[2:4] if len(argv) >= 4 else (None, None)))
        return 0
    if argv[:1] == ["child"]:
        _, kind, origin, ca, posts = argv
        print(json.dumps(measure(kind, origin, None if ca == "-" else ca, int(posts))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--tls", action="store_true", help="HTTPS to the endpoint (as to execute-api)")
    parser.add_argument("--share", type=float, default=None, help="CPU quota (fraction of a core), e.g. 0.579")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    share = args.share if args.share is not None else 1024 / LAMBDA_VCPU_MB
    quota = f"{args.share:.3f} core" if args.share else "none"
    transport = "TLS" if args.tls else "plain HTTP"
    print(f"load {os.getloadavg()[0]:.2f}; {args.posts} posts per run, best of {args.runs}; {transport}; quota {quota}")
    results: dict[str, dict[str, float]] = {}
    with endpoint(args.tls) as (url, cafile), contextlib.ExitStack() as stack:
        group = stack.enter_context(cpu_cgroup(args.share)) if args.share else None
        for kind in ("lean", "boto3"):
            runs = [measure_in_child(kind, url, cafile, args.posts, group) for _ in range(args.runs)]
            results[kind] = min(runs, key=lambda r: r["cpu"])
    print(f"{'sender':8} {'CPU/post':>10} {'wall posts/s':>13} {'posts/s at ' + format(share, '.3f') + ' core':>20}")
    for kind, r in results.items():
        per_post = r["cpu"] / args.posts
        at_share = args.posts / r["wall"] if args.share else share / per_post
        print(f"{kind:8} {per_post * 1e6:8.1f} us {args.posts / r['wall']:13.0f} {at_share:20.0f}")
    lean, boto = results["lean"], results["boto3"]
    print(f"lean/boto3: CPU per post {lean['cpu'] / boto['cpu']:.3f}x, wall {lean['wall'] / boto['wall']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
