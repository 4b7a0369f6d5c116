"""Load scenarios against a running Pusher-compatible server: fan-out, latency, presence, client events, idle.

Run through ``bench/run.py``, which starts the servers pinned to core 0 and this generator on core 1.
Events are published over the signed REST API with a fixed number of requests in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.wsclient import WsClient, connect
from local_server.transport import text_frame
from shared.auth.signatures import sign_channel, sign_request
from shared.protocol import frames

APP_ID, APP_KEY, APP_SECRET = "100001", "app-key", "app-secret"
WS_PATH = f"/app/{APP_KEY}?protocol=7&client=bench&version=8.6.0"


@dataclass
class Target:
    host: str
    port: int
    pid: int

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process: user time is Python, system time mostly the kernel's
        socket work. Both count only while the process runs, so they hold up on a busy machine where wall-clock
        figures do not."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def cpu_seconds(self) -> float:
        return sum(self.cpu_split())

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    @property
    def nodes(self) -> list[Target]:
        return [self]

    def commands(self) -> int | None:
        return None


@dataclass
class Cluster:
    """Several nodes of one cluster as one target: clients spread over the nodes round robin (client ``i`` on
    node ``i % n``), publishes alternate between them, CPU is the nodes' and the backend's sum, RSS the nodes',
    and ``commands`` reads the backend's command counter (Redis ``INFO commandstats``) for a per-delivery
    figure."""

    nodes: list[Target]
    command_counter: Callable[[], int] | None = None
    # Processes whose CPU counts as the cluster's own (the Redis server): work the cluster causes, not noise.
    backend_pids: list[int] = field(default_factory=list)

    def cpu_split(self) -> tuple[float, float]:
        splits = [node.cpu_split() for node in self.nodes]
        splits += [Target("", 0, pid).cpu_split() for pid in self.backend_pids]
        return sum(u for u, _ in splits), sum(s for _, s in splits)

    def cpu_seconds(self) -> float:
        return sum(self.cpu_split())

    def rss_kb(self) -> int:
        return sum(node.rss_kb() for node in self.nodes)

    def commands(self) -> int | None:
        return None if self.command_counter is None else self.command_counter()


Nodes = Target | Cluster


@dataclass
class Result:
    scenario: str
    figures: dict[str, float] = field(default_factory=dict)


def core_times() -> list[tuple[int, int]]:
    """(total, idle) jiffies of each core, from /proc/stat."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            values = [int(v) for v in line.split()[1:]]
            out.append((sum(values), values[3] + values[4]))
    return out


class CpuWindow:
    """Server CPU (user/system), this generator's own CPU share and everyone else's over a measured window.

    The generator's share says whether the bench itself was the bottleneck: near 100 % of its core, a
    figure measures the generator, not the server. ``others_cpu_pct`` is what other processes took from the
    two cores meanwhile (busy time not ours, in % of one core): on a shared machine a latency tail with
    others at 50 % measures them, not the server.
    """

    def __init__(self, target: Nodes) -> None:
        self.target = target
        self.commands0 = target.commands()
        self.server0 = target.cpu_split()
        self.gen0 = _own_cpu()
        self.cores0 = core_times()
        self.t0 = time.perf_counter()

    def figures(self, units: float, unit: str, scale: float = 1e6) -> dict[str, float]:
        """CPU per ``unit`` (µs by default) of server user+system time, its split, and the generator's share."""
        user1, sys1 = self.target.cpu_split()
        wall = time.perf_counter() - self.t0
        user, system = user1 - self.server0[0], sys1 - self.server0[1]
        generator = _own_cpu() - self.gen0
        busy = sum((t1 - t0) - (i1 - i0) for (t0, i0), (t1, i1) in zip(self.cores0, core_times(), strict=False))
        busy_s = busy / os.sysconf("SC_CLK_TCK")  # busy core-seconds over the window, ours included
        units = max(units, 1)
        commands1 = self.target.commands()
        backend: dict[str, float] = {}
        if self.commands0 is not None and commands1 is not None:
            backend[f"backend_cmds_per_{unit}"] = (commands1 - self.commands0) / units
        return {
            **backend,
            f"cpu_us_per_{unit}": (user + system) * scale / units,
            f"user_us_per_{unit}": user * scale / units,
            f"sys_us_per_{unit}": system * scale / units,
            "server_cpu_pct": 100 * (user + system) / wall,
            "generator_cpu_pct": 100 * generator / wall,
            f"generator_us_per_{unit}": generator * scale / units,
            "others_cpu_pct": max(0.0, 100 * (busy_s - user - system - generator) / wall),
        }


def backend_figures(cpu: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in cpu.items() if k.startswith("backend_")}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


class Publisher:
    """Signed REST publishes over keep-alive connections."""

    def __init__(self, target: Nodes, session: aiohttp.ClientSession) -> None:
        self.nodes = target.nodes
        self.session = session
        self.path = f"/apps/{APP_ID}/events"
        self.sent = 0

    async def publish(self, channel: str, data: str, name: str = "bench") -> None:
        body = json.dumps({"name": name, "channel": channel, "data": data}).encode()
        params = {
            "auth_key": APP_KEY,
            "auth_timestamp": str(int(time.time())),
            "auth_version": "1.0",
            "body_md5": hashlib.md5(body).hexdigest(),
        }
        params["auth_signature"] = sign_request(APP_SECRET, "POST", self.path, params)
        node = self.nodes[self.sent % len(self.nodes)]
        self.sent += 1
        url = f"http://{node.host}:{node.port}{self.path}"
        async with self.session.post(
            url, params=params, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"publish failed: {response.status} {await response.text()}")


async def open_clients(
    target: Nodes, n: int, concurrency: int = 100, on_frame: Any = None, first: int = 0
) -> list[WsClient]:
    """``n`` connected clients; on a cluster, client ``i`` goes to node ``(first + i) % nodes``."""
    semaphore = asyncio.Semaphore(concurrency)
    nodes = target.nodes

    async def one(i: int) -> WsClient:
        node = nodes[(first + i) % len(nodes)]
        async with semaphore:
            client = await connect(node.host, node.port, WS_PATH, on_frame)
            await asyncio.wait_for(client.established, 30)
            return client

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def subscribe_all(clients: list[WsClient], channel: str, private: bool = False) -> None:
    futures = []
    for client in clients:
        assert client.socket_id is not None
        data: dict[str, Any] = {"channel": channel}
        if private:
            data["auth"] = f"{APP_KEY}:{sign_channel(APP_SECRET, client.socket_id, channel)}"
        futures.append(client.wait_for(_subscribed(channel)))
        client.send({"event": "pusher:subscribe", "data": data})
    await asyncio.wait_for(asyncio.gather(*futures), 60)


def _subscribed(channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("event") == "pusher_internal:subscription_succeeded" and m.get("channel") == channel


def close_all(clients: list[WsClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


def fanout_frame() -> bytes:
    """The exact bytes each fan-out delivery puts on the wire (header + payload), as both servers build it."""
    payload = json.dumps({"event": "bench", "channel": "fanout", "data": '{"x":1}'}, separators=(",", ":"))
    return text_frame(payload.encode())


async def fanout(target: Nodes, subscribers: int, seconds: float = 5.0, in_flight: int = 16) -> Result:
    clients = await open_clients(target, subscribers)
    await subscribe_all(clients, "fanout")
    frame_size = len(fanout_frame())
    for client in clients:
        client.counting = True
    published = 0
    stop = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:
        publisher = Publisher(target, session)

        async def loop() -> None:
            nonlocal published
            while not stop:
                await publisher.publish("fanout", '{"x":1}')
                published += 1

        window, t0 = CpuWindow(target), time.perf_counter()
        tasks = [asyncio.create_task(loop()) for _ in range(in_flight)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        expected = published * subscribers
        deadline = time.perf_counter() + 30
        while sum(c.nbytes for c in clients) // frame_size < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        t1 = time.perf_counter()
    delivered = sum(c.nbytes for c in clients) // frame_size
    cpu = window.figures(delivered, "delivery")
    close_all(clients)
    return Result(
        f"fanout {subscribers}",
        {"deliveries_per_s": delivered / (t1 - t0), **cpu, "lost": float(expected - delivered)},
    )


def sent_at(payload: bytes) -> float:
    """The send time a latency or client-event frame carries in its data (``{"t": <perf_counter>}``, encoded as
    a string inside the frame), read without decoding the JSON twice: the generator reads one of these per
    delivery, and its cost would show as latency."""
    start = payload.index(b'\\"t\\":') + 6
    return float(payload[start : payload.index(b"}", start)])


async def latency(target: Nodes, subscribers: int, rate: float, seconds: float = 5.0) -> Result:
    samples: list[float] = []

    def on_frame(_client: WsClient, payload: bytes, now: float) -> None:
        if payload.startswith(b'{"event":"latency"'):
            samples.append((now - sent_at(payload)) * 1000)

    clients = await open_clients(target, subscribers, on_frame=on_frame)
    await subscribe_all(clients, "latency")
    async with aiohttp.ClientSession() as session:
        publisher = Publisher(target, session)
        interval = 1.0 / rate
        window = CpuWindow(target)
        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(int(seconds * rate)):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(
                publisher.publish("latency", json.dumps({"t": time.perf_counter()}), name="latency")
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        await asyncio.sleep(0.5)
    cpu = window.figures(len(samples), "delivery")
    close_all(clients)
    return Result(
        f"latency {subscribers}x{rate:g}/s",
        {
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "samples": float(len(samples)),
            "cpu_us_per_delivery": cpu["cpu_us_per_delivery"],
            "user_us_per_delivery": cpu["user_us_per_delivery"],
            "sys_us_per_delivery": cpu["sys_us_per_delivery"],
            "generator_cpu_pct": cpu["generator_cpu_pct"],
            "others_cpu_pct": cpu["others_cpu_pct"],
            **backend_figures(cpu),
        },
    )


async def presence(target: Nodes, members: int = 500, rate: float = 200.0, members_read: bool = False) -> Result:
    """member_added latency at an observer (the first member) while ``members`` join at ``rate``/s.

    By default the joining members do not read during the measurement: with 500 members the server sends up to
    100,000 member_added frames/s, and a one-core Python generator reading them all falls behind, so its own
    lag becomes the tail (``members_read=True`` shows it). Their frames wait in the kernel (a few tens of KB per
    socket, well under the server's write bound): the server's work per join is the same either way.
    """
    sent: dict[str, float] = {}
    samples: list[float] = []

    def observe(_client: WsClient, payload: bytes, now: float) -> None:
        if b"member_added" in payload:
            user = json.loads(json.loads(payload)["data"])["user_id"]
            if user in sent:
                samples.append((now - sent[user]) * 1000)

    observer = (await open_clients(target, 1, on_frame=observe))[0]
    channel = "presence-bench"
    await _join_presence(observer, channel, "observer")
    clients = await open_clients(target, members, first=1)
    window = CpuWindow(target)
    start = time.perf_counter()
    for i, client in enumerate(clients):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        user = f"user-{i}"
        sent[user] = time.perf_counter()
        _send_presence(client, channel, user)
        client.counting = True  # only the observer parses its frames
        if not members_read and client.transport is not None:
            client.transport.pause_reading()
    deadline = time.perf_counter() + 30
    while len(samples) < members and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    cpu = window.figures(len(samples), "join")
    close_all([observer, *clients])
    return Result(
        f"presence {members} joining at {rate:g}/s" + (", members reading" if members_read else ""),
        {
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "seen": float(len(samples)),
            "cpu_us_per_join": cpu["cpu_us_per_join"],
            "generator_cpu_pct": cpu["generator_cpu_pct"],
            "others_cpu_pct": cpu["others_cpu_pct"],
            **backend_figures(cpu),
        },
    )


def _send_presence(client: WsClient, channel: str, user: str) -> None:
    assert client.socket_id is not None
    channel_data = json.dumps({"user_id": user, "user_info": {"name": user}})
    auth = f"{APP_KEY}:{sign_channel(APP_SECRET, client.socket_id, channel, channel_data)}"
    client.send({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}})


async def _join_presence(client: WsClient, channel: str, user: str) -> None:
    done = client.wait_for(lambda m: m.get("event") == "pusher_internal:subscription_succeeded")
    _send_presence(client, channel, user)
    await asyncio.wait_for(done, 30)


# Linux's SO_TIMESTAMPNS (asm-generic/socket.h); Python's socket module does not export it.
SO_TIMESTAMPNS = 35
# One preallocated buffer for every kernel-stamped read (each read is consumed before the next starts).
_KERNEL_READ_BUFFER = memoryview(bytearray(256 * 1024))


def read_with_kernel_stamps(client: WsClient) -> Callable[[], None]:
    """Move a connected client's reads from its transport to ``recvmsg`` with ``SO_TIMESTAMPNS``, so each read
    carries the time its bytes reached the client's socket (``client.kernel_time``, wall clock).

    Why: a one-core Python generator reading 499 sockets spends ~10 µs per read, so the last of an event's
    receivers is read a few ms after its frame arrived; the latency it stamps then measures the generator.
    The kernel's arrival time is the server's delivery latency, whoever reads it and how fast.
    Returns a function that stops the reader.
    """
    loop = asyncio.get_running_loop()
    transport = client.transport
    assert transport is not None
    transport.pause_reading()
    sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    fd = sock.fileno()

    def ready() -> None:
        try:
            nbytes, ancillary, _flags, _addr = sock.recvmsg_into([_KERNEL_READ_BUFFER], 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            nbytes = 0
        if not nbytes:
            loop.remove_reader(fd)
            return
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("@qq", raw[:16])
                client.kernel_time = seconds + nanoseconds / 1e9
        client.data_received(_KERNEL_READ_BUFFER[:nbytes])

    loop.add_reader(fd, ready)

    def stop() -> None:
        loop.remove_reader(fd)
        sock.close()

    return stop


def sent_wall(payload: bytes) -> float:
    """The wall-clock send time a client-event frame carries (``{"w": <time.time()>, ...}``), for kernel stamps."""
    start = payload.index(b'\\"w\\":') + 6
    return float(payload[start : payload.index(b",", start)])


async def client_events(target: Nodes, receivers: int = 499, events: int = 100, rate: float = 50.0) -> Result:
    """One client sends ``events`` client events at ``rate``/s; the other ``receivers`` get each one.

    Two latencies per delivery: ``p99_ms`` when this generator read the frame (what the issue's reference
    figures measure, generator included) and ``kernel_p99_ms`` when the frame reached the receiver's socket
    (the server alone; ``read_with_kernel_stamps``).
    """
    samples: list[float] = []
    kernel: list[float] = []
    # Arrival of each event at its first and at its last receiver: how long before the server's first send, and
    # how long its fan-out took (the p99 is about the slowest events' last receivers).
    first: dict[float, float] = {}
    last: dict[float, float] = {}

    def on_frame(client: WsClient, payload: bytes, now: float) -> None:
        if b"client-bench" in payload:
            samples.append((now - sent_at(payload)) * 1000)
            if client.kernel_time:
                sent = sent_wall(payload)
                arrival = (client.kernel_time - sent) * 1000
                kernel.append(arrival)
                first[sent] = min(first.get(sent, arrival), arrival)
                last[sent] = max(last.get(sent, arrival), arrival)

    clients = await open_clients(target, receivers + 1, on_frame=on_frame)
    await subscribe_all(clients, "private-bench", private=True)
    sender = clients[0]
    stops = [read_with_kernel_stamps(client) for client in clients[1:]]
    window = CpuWindow(target)
    start = time.perf_counter()
    for i in range(events):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        data = {"w": time.time(), "t": time.perf_counter()}
        sender.send({"event": "client-bench", "channel": "private-bench", "data": data})
    deadline = time.perf_counter() + 30
    while len(samples) < events * receivers and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    cpu = window.figures(len(samples), "delivery")
    for stop in stops:
        stop()
    close_all(clients)
    return Result(
        f"client events {events} x {receivers}",
        {
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "kernel_p50_ms": percentile(kernel, 50),
            "kernel_p99_ms": percentile(kernel, 99),
            "first_receiver_p50_ms": percentile(list(first.values()), 50),
            "last_receiver_p50_ms": percentile(list(last.values()), 50),
            "events_over_6ms": float(sum(1 for v in last.values() if v > 6)),
            "delivered": float(len(samples)),
            "cpu_us_per_delivery": cpu["cpu_us_per_delivery"],
            "user_us_per_delivery": cpu["user_us_per_delivery"],
            "generator_cpu_pct": cpu["generator_cpu_pct"],
            "others_cpu_pct": cpu["others_cpu_pct"],
            **backend_figures(cpu),
        },
    )


async def stalled(
    target: Nodes, subscribers: int = 1000, stalled: int = 5, seconds: float = 15.0, payload_kb: int = 8
) -> Result:
    """Fan-out at full rate while ``stalled`` of the subscribers stop reading their sockets.

    The server must bound what it buffers for them (it closes them with 4100 past the bound) without slowing
    the others or growing its memory with the backlog. Run once with ``stalled=0`` for the reference.
    """
    healthy = await open_clients(target, subscribers - stalled)
    nodes = target.nodes
    stuck = [
        await connect(nodes[i % len(nodes)].host, nodes[i % len(nodes)].port, WS_PATH, rcvbuf=4096)
        for i in range(stalled)
    ]
    for client in stuck:
        await asyncio.wait_for(client.established, 30)
    await subscribe_all([*healthy, *stuck], "fanout")
    for client in healthy:
        client.counting = True
    for client in stuck:
        assert client.transport is not None
        client.transport.pause_reading()
    data = json.dumps({"pad": "x" * (payload_kb * 1024 - 64)})
    frame_size = len(text_frame(frames.frame("bench", data, "fanout")))
    rss0 = peak = target.rss_kb()
    published = 0
    stop = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        publisher = Publisher(target, session)

        async def loop() -> None:
            nonlocal published
            while not stop:
                await publisher.publish("fanout", data)
                published += 1

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(loop()) for _ in range(16)]
        while time.perf_counter() - t0 < seconds:
            await asyncio.sleep(0.2)
            peak = max(peak, target.rss_kb())
        stop = True
        await asyncio.gather(*tasks)
        expected = published * len(healthy)
        deadline = time.perf_counter() + 30
        while sum(c.nbytes for c in healthy) // frame_size < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        t1 = time.perf_counter()
    rss1 = target.rss_kb()
    # The stalled clients read again: those the server closed see the end of their connection.
    for client in stuck:
        assert client.transport is not None
        client.transport.resume_reading()
    await asyncio.sleep(2.0)
    closed = sum(1 for client in stuck if client.closed.done())
    delivered = sum(c.nbytes for c in healthy) // frame_size
    close_all([*healthy, *stuck])
    return Result(
        f"stalled {stalled} of {subscribers}, {payload_kb} KB events",
        {
            "healthy_deliveries_per_s": delivered / (t1 - t0),
            "healthy_lost": float(expected - delivered),
            "rss_growth_peak_mb": (peak - rss0) / 1024,
            "rss_growth_end_mb": (rss1 - rss0) / 1024,
            "stalled_closed": float(closed),
        },
    )


async def idle(target: Nodes, connections: int = 10_000, concurrency: int = 200) -> Result:
    rss0 = target.rss_kb()
    window = CpuWindow(target)
    t0 = time.perf_counter()
    clients = await open_clients(target, connections, concurrency=concurrency)
    t1 = time.perf_counter()
    cpu = window.figures(connections, "connection")
    await asyncio.sleep(1.0)
    rss1 = target.rss_kb()
    close_all(clients)
    return Result(
        f"idle {connections}",
        {
            "opened_per_s": connections / (t1 - t0),
            "rss_kb_per_connection": (rss1 - rss0) / connections,
            "cpu_us_per_connection": cpu["cpu_us_per_connection"],
            "generator_cpu_pct": cpu["generator_cpu_pct"],
            "others_cpu_pct": cpu["others_cpu_pct"],
        },
    )


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"
