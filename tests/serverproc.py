"""Start the real local server as a subprocess on free ports, the way `make serve` runs it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINE_TIMEOUT = 15.0  # seconds Lines.expect waits by default


# Ports for the servers tests start. A port is picked before the server binds it, so two pickers must never
# hand out the same one: each test process (one per pytest-xdist worker) walks its own block, and every
# block lies below Linux's ephemeral range (32768-60999), from which the kernel picks the ports of outgoing
# connections and of binds to port 0. 20000-29999 stays free for the Redis cluster bus (port + 10000).
PORTS_FROM = 10_000
PORTS_PER_PROCESS = 1_250
BLOCKS = 8
_next_port = itertools.count(random.randrange(PORTS_PER_PROCESS))


def _block() -> int:
    """0 for a plain pytest run, 1 + N for pytest-xdist's worker gwN."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return (int(worker[2:]) + 1) % BLOCKS if worker.startswith("gw") else 0


def free_port() -> int:
    """A port of this process's block that nothing listens on (or lingers on) now, never the same twice in a
    row of ``PORTS_PER_PROCESS`` picks."""
    base = PORTS_FROM + _block() * PORTS_PER_PROCESS
    for _ in range(PORTS_PER_PROCESS):
        port = base + next(_next_port) % PORTS_PER_PROCESS
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {base}-{base + PORTS_PER_PROCESS - 1}")


class ServerProcess:
    """A ``python -m local_server`` child process with its own config file."""

    def __init__(self, config: dict[str, Any], *, args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.port = free_port()
        self.metrics_port = free_port()
        self.config = {"host": "127.0.0.1", "port": self.port, "metrics_port": self.metrics_port, **config}
        self.port = int(self.config["port"])
        self.metrics_port = self.config["metrics_port"]
        self._tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(self.config, self._tmp)
        self._tmp.close()
        self.log_path = Path(self._tmp.name).with_suffix(".log")
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        if "--emulate-lambda" in self.args and "--template" not in self.args:
            # The emulator runs the synthesized stack: synthesize it here (once per source state, cached)
            # so the server's start-up timeout never includes a cdk synth.
            from local_server.emulator import synth

            context = dict(
                value.split("=", 1)
                for flag, value in zip(self.args, self.args[1:], strict=False)
                if flag == "--cdk-context"
            )
            synth.template(context)
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local_server", "--config", self._tmp.name, *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        # Ready when every port it serves accepts: the metrics endpoint may open after the main one (the
        # emulator serves none).
        emulating = "--emulate-lambda" in self.args
        waiting = [p for p in (self.port, None if emulating else self.metrics_port) if p]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
                if not waiting:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        for path in (self._tmp.name, self.log_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


class Lines:
    """A child process's stdout, line by line, read on a thread so a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, pattern: str, timeout: float = LINE_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.seen))


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group the test started, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
