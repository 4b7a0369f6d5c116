"""Issue #19.2's scenario: readers and clients that never read, 2 KB events published for a while; prints the
server's RSS before, at its peak and after, and what each kind of client got.

    python -m bench.slow_consumers [--readers 200] [--stalled 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time
from pathlib import Path

import aiohttp

from tests.serverproc import ServerProcess
from tests.support import next_frame, signed_params, text_frame, upgrade_request


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def raw_client(port: int, rcvbuf: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(upgrade_request())
    await reader.readuntil(b"\r\n\r\n")
    await next_frame(reader)
    writer.write(text_frame({"event": "pusher:subscribe", "data": {"channel": "feed"}}))
    await next_frame(reader)
    return reader, writer


async def main(readers: int, stalled: int, seconds: float) -> None:
    app = {"id": "100001", "key": "app-key", "secret": "app-secret"}
    server = ServerProcess({"apps": [app]}).start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        fast = [await raw_client(server.port, None) for _ in range(readers)]
        slow = [await raw_client(server.port, 4096) for _ in range(stalled)]
        received = [0] * readers

        async def read(i: int, reader: asyncio.StreamReader) -> None:
            while True:
                await next_frame(reader)
                received[i] += 1

        reading = [asyncio.create_task(read(i, r)) for i, (r, _) in enumerate(fast)]
        base = peak = rss_mb(pid)
        published = 0
        data = "x" * 2000
        path = "/apps/100001/batch_events"  # ten 2 KB events per request
        body = json.dumps({"batch": [{"name": "ev", "channel": "feed", "data": data}] * 10}).encode()
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:

            async def publisher() -> None:
                nonlocal published
                while time.monotonic() - started < seconds:
                    params = signed_params("POST", path, body)
                    async with http.post(server.url + path, params=params, data=body) as response:
                        assert response.status == 200
                    published += 10

            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, rss_mb(pid))
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            await asyncio.gather(*(publisher() for _ in range(8)))
            await asyncio.sleep(8)  # the close wait (5 s) and the trim after it
            sampling = False
            await sampler
        after = rss_mb(pid)

        async def close_code(reader: asyncio.StreamReader) -> int | None:
            try:
                async with asyncio.timeout(10):
                    while True:
                        opcode, payload = await next_frame(reader)
                        if opcode == 0x8:
                            return int(struct.unpack("!H", payload[:2])[0])
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionResetError):
                return None

        codes = await asyncio.gather(*(close_code(reader) for reader, _ in slow))
        for task in reading:
            task.cancel()
        print(
            json.dumps(
                {
                    "readers": readers,
                    "stalled": stalled,
                    "seconds": seconds,
                    "published": published,
                    "reader_min_received": min(received),
                    "rss_mb": {"connected": round(base, 1), "peak": round(peak, 1), "after": round(after, 1)},
                    "stalled_close_codes": {str(c): codes.count(c) for c in set(codes)},
                }
            )
        )
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--stalled", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.readers, args.stalled, args.seconds))
