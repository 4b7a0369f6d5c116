"""A server-sent-events reader for ``/debug/stream``: what the console page receives, as dicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

Message = dict[str, Any]


class Stream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.seen: list[Message] = []
        self.raw = ""  # every byte of every message, to prove what never appears
        self._taken: set[int] = set()  # indexes in ``seen`` already returned by :meth:`wait`

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base_url: str, app: str = "100001", **kwargs: Any) -> Stream:
        response = await session.get(f"{base_url}/debug/stream", params={"app": app}, **kwargs)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return cls(response)

    async def next(self, timeout: float = 5.0) -> Message:
        data: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), timeout)).decode()
            if not line:
                raise EOFError("stream ended")
            if line in ("\n", "\r\n"):
                if data:
                    text = "\n".join(data)
                    self.raw += text
                    message: Message = json.loads(text)
                    self.seen.append(message)
                    return message
            elif line.startswith("data: "):
                data.append(line[6:].rstrip("\n"))

    async def wait(
        self, match: Callable[[Message], bool], timeout: float = 5.0, what: str = "message", *, fresh: bool = False
    ) -> Message:
        """The first message not yet returned by a wait that matches, whether it already arrived or not:
        events of different sources (e.g. a Lambda invocation and the engine event inside it) may come in
        either order. ``fresh``: only messages that arrive from now on (snapshots: state, rate)."""
        for index, message in enumerate(self.seen):
            if not fresh and index not in self._taken and match(message):
                self._taken.add(index)
                return message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                message = await self.next(max(remaining, 0.001))
            except TimeoutError:
                recent = "\n".join(json.dumps(m)[:300] for m in self.seen[-20:])
                raise AssertionError(f"no {what} within {timeout}s; last messages:\n{recent}") from None
            if match(message):
                self._taken.add(len(self.seen) - 1)
                return message

    async def event(self, kind: str, timeout: float = 5.0, **fields: Any) -> Message:
        """The next log event of type ``kind`` whose fields equal ``fields``."""

        def match(m: Message) -> bool:
            return m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())

        return await self.wait(match, timeout, f"{kind} {fields}")

    async def state(self, match: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The next state snapshot that matches (an older one describes the past)."""
        return await self.wait(lambda m: m.get("type") == "state" and match(m), timeout, "matching state", fresh=True)

    def close(self) -> None:
        self.response.close()


def channel(state: Message, name: str) -> Message | None:
    return next((c for c in state["channels"] if c["name"] == name), None)
