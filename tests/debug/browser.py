"""Python side of ``js/browser.mjs``: Debian's headless Chromium driven by playwright-core, one command at a time."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from tests.nodeproc import NodeChild, spawn_node
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


class Browser(NodeChild):
    """One page in one Chromium; always :meth:`close` it (the fixture does)."""

    label = "browser"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.reports: list[dict[str, Any]] = []
        self._ready = asyncio.get_running_loop().create_future()
        super().__init__(proc)

    @classmethod
    async def start(cls, timeout: float = 30.0) -> Browser:
        browser = cls(await spawn_node(SCRIPT, limit=16 * 1024 * 1024))
        try:
            await asyncio.wait_for(asyncio.shield(browser._ready), timeout)
        except BaseException:
            await browser.close()
            raise
        return browser

    async def on_report(self, msg: dict[str, Any]) -> None:
        if msg["report"] == "ready":
            self._ready.set_result(True)
        else:
            self.reports.append(msg)

    def reply_error(self, error: Any) -> Exception:
        return AssertionError(f"browser: {error}\n{self.page_log()}")

    def on_exit(self, failure: Exception) -> None:
        if not self._ready.done():
            self._ready.set_exception(failure)
        super().on_exit(failure)

    async def call(self, cmd: str, timeout: float = 15.0, **fields: Any) -> Any:
        return await super().call(cmd, timeout, **fields)

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
        await self.stop(wait=10)
