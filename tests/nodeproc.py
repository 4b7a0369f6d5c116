"""A Node child process spoken to in JSON lines, the transport of the pusher-js driver and the browser driver.

Commands go in as ``{"id": n, "cmd": ..., ...}``; the child answers ``{"id": n, "ok": true, "result": ...}`` or
``{"id": n, "ok": false, "error": ...}`` and may volunteer ``{"report": ...}`` lines at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

from tests.serverproc import ROOT


async def spawn_node(script: Path, limit: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "node",
        str(script),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=limit,
    )


class NodeChild:
    """Replies matched to their commands, reports handed to :meth:`on_report`, stderr kept for failures."""

    label = "node"  # names the child in failures

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._stderr = bytearray()
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    async def on_report(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    def reply_error(self, error: Any) -> Exception:
        return RuntimeError(f"{self.label}: {error}")

    def on_exit(self, failure: Exception) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(failure)

    def stderr_tail(self, size: int = 3000) -> str:
        return self._stderr.decode(errors="replace")[-size:]

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if "report" in msg:
                await self.on_report(msg)
                continue
            future = self._replies.pop(msg["id"], None)
            if future is not None and not future.done():
                if msg["ok"]:
                    future.set_result(msg["result"])
                else:
                    future.set_exception(self.reply_error(msg["error"]))
        self.on_exit(RuntimeError(f"{self.label} exited: {self.stderr_tail()}"))

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr += chunk

    async def call(self, cmd: str, timeout: float = 10.0, **fields: Any) -> Any:
        assert self.proc.stdin is not None
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        self.proc.stdin.write(json.dumps({"id": msg_id, "cmd": cmd, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, timeout)

    async def stop(self, wait: float) -> None:
        """Close stdin, give the child ``wait`` seconds to exit, then kill it; stop the readers."""
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), wait)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
