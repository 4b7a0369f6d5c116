"""Connect/subscribe/close cycles against one node: what each thousand leaves behind in the process (RSS) and
in its file table (open descriptors), and in the store (connections counted)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp

from bench.faults.common import APP, APP_ID, Rig, load, log_problems, open_fds, rss_kb, session, tcp_fds
from tests.support import metric


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of ``(cycles, value)`` points, per 1,000 cycles."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def _median_step(points: list[tuple[int, int]], every: int) -> float:
    steps = sorted((b[1] - a[1]) * 1000 / every for a, b in itertools.pairwise(points))
    return round(steps[len(steps) // 2], 2) if steps else 0.0


async def cycles(
    cycles: int = 30_000,
    concurrency: int = 20,
    store: str = "redis",
    every: int = 1000,
    rate: float = 200.0,
    pause: float = 2.0,
) -> dict[str, Any]:
    """``cycles`` times, ``concurrency`` at once, started at ``rate`` a second: open a WebSocket, wait for
    ``connection_established``, subscribe to one of 50 channels, wait for ``subscription_succeeded``, close. RSS
    and open descriptors are sampled every ``every`` cycles.

    The cycles run in two halves with ``pause`` s between them (every socket closed: descriptors counted then).
    A Redis node remembers each socket it let go of for 60 s (at most 100,000: shared/sender/redis.py), so RSS
    grows with that bounded memory for the first minute; at 200 cycles a second the first half lasts 75 s, so
    by the second half that memory is at its steady size (rate x 60 s sockets). Growth per 1,000 is the slope
    of the second half; the first half's is shown beside it. The descriptors after the second half must be
    those after the first, and the node must count no connection."""
    rig = Rig()
    try:
        (node,) = rig.start_nodes(1, [APP], store=store)
        assert node.proc is not None
        pid = node.proc.pid
        url = f"{node.ws_url}/app/{APP['key']}?protocol=7&client=faults&version=1"
        done = 0
        failures = 0
        samples: list[tuple[int, int, int]] = []  # (cycles done, RSS KB, open descriptors)

        async def one(http: aiohttp.ClientSession, k: int) -> None:
            async with http.ws_connect(url) as ws:
                welcome = await ws.receive_json(timeout=10)
                assert welcome["event"] == "pusher:connection_established", welcome
                await ws.send_json({"event": "pusher:subscribe", "data": {"channel": f"cycle-{k % 50}"}})
                while (await ws.receive_json(timeout=10))["event"] != "pusher_internal:subscription_succeeded":
                    pass

        async def phase(http: aiohttp.ClientSession, count: int) -> float:
            counter = itertools.count()
            started = time.monotonic()

            async def worker() -> None:
                nonlocal done, failures
                while (k := next(counter)) < count:
                    await asyncio.sleep(max(0.0, started + k / rate - time.monotonic()))
                    try:
                        await one(http, k)
                    except (aiohttp.ClientError, TimeoutError, AssertionError, OSError):
                        failures += 1
                    done += 1
                    if done % every == 0:
                        samples.append((done, rss_kb(pid), open_fds(pid)))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.monotonic() - started

        async with session() as http:
            # One round at full concurrency first: it builds what every later one reuses (the Redis pool grows
            # to the concurrency), so the baseline is what a steady node holds.
            await asyncio.gather(*(one(http, k) for k in range(concurrency)))
            await asyncio.sleep(1.0)
            before = (rss_kb(pid), open_fds(pid))
            sockets_before = tcp_fds(pid, node.port)
            load_before = load()
            first = cycles // 2
            elapsed = await phase(http, first)
            await asyncio.sleep(pause)
            middle = (rss_kb(pid), open_fds(pid))
            sockets_middle = tcp_fds(pid, node.port)
            elapsed += await phase(http, cycles - first)
        await asyncio.sleep(2.0)  # the node's side of the last closes
        after = (rss_kb(pid), open_fds(pid))
        sockets_after = tcp_fds(pid, node.port)
        connected = await metric(node, "sockless_connected", app_id=APP_ID)
        halves = [(c, r) for c, r, _ in samples if c <= first], [(c, r) for c, r, _ in samples if c > first]
        return {
            "cycles": cycles,
            "concurrency": concurrency,
            "rate": rate,
            "store": store,
            "failures": failures,
            "cycles_per_s": round(cycles / elapsed, 1),
            "rss_kb": {"before": before[0], "after_first_half": middle[0], "after": after[0]},
            "rss_kb_per_1000": round(slope(halves[1]), 2),
            # The allocator grows in steps (an arena, a table resized): the typical thousand, steps aside.
            "rss_kb_per_1000_median": _median_step(halves[1], every),
            "rss_kb_per_1000_first_half": round(slope(halves[0]), 2),
            # In-flight sockets make the samples noisy: what cycles leave behind shows once all are closed.
            "fds": {"before": before[1], "after_first_half": middle[1], "after": after[1]},
            "fds_max": max((f for _, _, f in samples), default=before[1]),
            # What they are: client sockets must all be gone; outgoing ones are the Redis pool (it grows to
            # the commands in flight at once, bounded by the pool's size).
            "tcp_sockets": {"before": sockets_before, "after_first_half": sockets_middle, "after": sockets_after},
            "connected_after": connected,
            "samples": samples,
            "log": log_problems(node),
            "load": load_before,
        }
    finally:
        rig.close()
