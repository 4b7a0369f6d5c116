"""Python side of ``js/browser.mjs``: Debian's headless Chromium driven by playwright-core, one command at a time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

from tests.serverproc import ROOT

SCRIPT = Path(__file__).resolve().parent / "js" / "browser.mjs"
CHROMIUM = "/usr/bin/chromium"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (``make test`` installs both where apt is available)."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is missing (npm install)"
    if shutil.which("node") is None:
        return "node is missing"
    return None


class Browser:
    """One page in one Chromium; always :meth:`close` it (the fixture does)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.reports: list[dict[str, Any]] = []
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._ready = asyncio.get_running_loop().create_future()
        self._stderr = bytearray()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._read_stderr())]

    @classmethod
    async def start(cls, timeout: float = 30.0) -> Browser:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        browser = cls(proc)
        try:
            await asyncio.wait_for(asyncio.shield(browser._ready), timeout)
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if msg.get("report") == "ready":
                self._ready.set_result(True)
            elif "report" in msg:
                self.reports.append(msg)
            else:
                future = self._replies.pop(msg["id"], None)
                if future is not None and not future.done():
                    if msg["ok"]:
                        future.set_result(msg["result"])
                    else:
                        future.set_exception(AssertionError(f"browser: {msg['error']}\n{self.page_log()}"))
        failure = RuntimeError(f"browser exited: {self._stderr.decode(errors='replace')[-3000:]}")
        if not self._ready.done():
            self._ready.set_exception(failure)
        for future in self._replies.values():
            if not future.done():
                future.set_exception(failure)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr += chunk

    async def call(self, cmd: str, timeout: float = 15.0, **fields: Any) -> Any:
        assert self.proc.stdin is not None
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        self.proc.stdin.write(json.dumps({"id": msg_id, "cmd": cmd, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, timeout)

    def page_log(self) -> str:
        return "\n".join(f"[{r['report']}] {r.get('text')}" for r in self.reports[-20:]) or "(page logged nothing)"

    def page_errors(self) -> list[str]:
        return [str(r.get("text")) for r in self.reports if r["report"] == "pageerror"]

    # -- commands --------------------------------------------------------------------------------------

    async def open(self, url: str) -> int | None:
        result = await self.call("open", url=url)
        return None if result["status"] is None else int(result["status"])

    async def wait(self, selector: str, text: str | None = None, timeout: float = 5.0) -> None:
        """Until an element matching ``selector`` (containing ``text``) is visible."""
        await self.call("wait", timeout=timeout + 5, selector=selector, text=text, ms=int(timeout * 1000))

    async def texts(self, selector: str) -> list[str]:
        result: list[str] = await self.call("texts", selector=selector)
        return result

    async def count(self, selector: str, text: str | None = None) -> int:
        return int(await self.call("count", selector=selector, text=text))

    async def fill(self, selector: str, value: str) -> None:
        await self.call("fill", selector=selector, value=value)

    async def click(self, selector: str) -> None:
        await self.call("click", selector=selector)

    async def check(self, selector: str, on: bool) -> None:
        await self.call("check", selector=selector, on=on)

    async def screenshot(self, path: Path) -> None:
        await self.call("screenshot", path=str(path))

    async def close(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
