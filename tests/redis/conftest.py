"""Fixtures for the Redis tests: the shared test Redis, clusters of real local-server processes, pusher-js.

Every test gets its own key prefix, so clusters of different tests never see each other, and the
prefix is flushed afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.redis.backend import REDIS_URL, unique_prefix
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.redis

# Short enough that node failure tests run in seconds, long enough for a loaded 2-core machine.
TEST_LEASE_SECONDS = 2.0


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis must be there: a missing backend is a failure, not a skip."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} (set SOCKLESS_TEST_REDIS_URL): {exc}")
    finally:
        client.close()
    return REDIS_URL


def flush_sync(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def node_config(url: str, prefix: str, lease: float = TEST_LEASE_SECONDS, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apps": [DEFAULT_APP, NUMERIC_APP],
        "store": {"driver": "redis", "url": url, "prefix": prefix, "lease_seconds": lease},
        "queue": {"driver": "redis", "prefix": prefix},
        "shutdown_grace_seconds": 2,
    }
    config.update(extra)
    return config


class Cluster:
    """Local-server processes sharing one Redis under one key prefix."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = unique_prefix()
        self.nodes: list[ServerProcess] = []

    def start(self, count: int = 1, *, url: str | None = None, **config: Any) -> list[ServerProcess]:
        started = []
        for _ in range(count):
            node = ServerProcess(node_config(url or self.url, self.prefix, **config)).start()
            self.nodes.append(node)
            started.append(node)
        return started

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        flush_sync(REDIS_URL, self.prefix)


@pytest.fixture
def cluster(redis_url: str) -> Iterator[Cluster]:
    nodes = Cluster(redis_url)
    try:
        yield nodes
    finally:
        nodes.cleanup()


class RedisServer:
    """A private ``redis-server`` the test may kill, pause and restart (on the same port)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Closed at once: a probe left to the garbage collector stays connected for a while, and tests
            # count the server's clients (test_batched_script.py).
            with (
                contextlib.suppress(redis.RedisError),
                redis.Redis(port=self.port, socket_connect_timeout=0.2) as probe,
            ):
                if probe.ping():
                    return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def clients(self) -> list[dict[str, Any]]:
        """The server's client connections, the asking one excepted (it is closed before this returns)."""
        with redis.Redis(port=self.port) as observer:
            own = observer.client_id()
            return [c for c in observer.client_list() if int(c["id"]) != own]

    def kill(self) -> None:
        """Redis gone, and everything it held with it (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """Redis unreachable but its data intact (like a network partition): SIGSTOP."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.resume()
        server.kill()
