"""Python side of ``js/driver.mjs``: real pusher-js clients and the Node ``pusher`` SDK, driven over JSON lines.

One Node process hosts any number of named pusher-js clients. Every state change, error, received frame
and channel callback comes back as a timestamped report; tests wait for them with :meth:`JsClient.expect`
and friends, and prove silence with :meth:`JsClient.assert_no`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.nodeproc import NodeChild, spawn_node

DRIVER = Path(__file__).resolve().parent / "js" / "driver.mjs"
SOCKET_ID = re.compile(r"^\d+\.\d+$")
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class App:
    id: str
    key: str
    secret: str

    @classmethod
    def of(cls, config: dict[str, Any]) -> App:
        return cls(str(config["id"]), str(config["key"]), str(config["secret"]))


Report = dict[str, Any]
Match = Callable[[Report], bool]


def error_code(report: Report) -> int | None:
    """The Pusher code inside a connection ``error`` report, wherever pusher-js nested it."""
    error = report.get("error")
    while isinstance(error, dict):
        data = error.get("data")
        if isinstance(data, dict) and isinstance(data.get("code"), int):
            return int(data["code"])
        error = error.get("error")
    return None


def error_message(report: Report) -> str | None:
    """The ``message`` of the ``pusher:error`` inside a connection ``error`` report."""
    error = report.get("error")
    while isinstance(error, dict):
        data = error.get("data")
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
        error = error.get("error")
    return None


class NodeDriver(NodeChild):
    """One ``node driver.mjs`` child process; always :meth:`close` it (the fixture does)."""

    label = "driver"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.reports: list[Report] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Condition()
        super().__init__(proc)

    @classmethod
    async def start(cls) -> NodeDriver:
        return cls(await spawn_node(DRIVER, limit=4 * 1024 * 1024))

    async def on_report(self, msg: dict[str, Any]) -> None:
        async with self._changed:
            self.reports.append(msg)
            self._changed.notify_all()

    async def client(self, name: str, app: App, port: int, *, connected: bool = True, **spec: Any) -> JsClient:
        """A pusher-js client; ``spec`` adds ``user`` (presence channel_data), ``signin`` (user_data),
        ``master_key`` (base64), ``wrong_secret``, ``auth_endpoint``, ``origin`` or pusher-js ``options``."""
        js_spec = {
            "key": app.key,
            "secret": app.secret,
            "port": port,
            "user": spec.pop("user", None),
            "signin": spec.pop("signin", None),
            "masterKeyBase64": spec.pop("master_key", None),
            "wrongSecret": spec.pop("wrong_secret", False),
            "authEndpoint": spec.pop("auth_endpoint", None),
            "origin": spec.pop("origin", None),
            "options": spec.pop("options", None),
        }
        assert not spec, f"unknown client options {sorted(spec)}"
        await self.call("connect", client=name, spec=js_spec)
        client = JsClient(self, name)
        if connected:
            await client.expect_state("connected")
        return client

    async def sdk_trigger(
        self,
        app: App,
        port: int,
        channels: str | list[str],
        event: str,
        data: Any,
        *,
        socket_id: str | None = None,
        master_key: str | None = None,
    ) -> dict[str, Any]:
        """Publish through the Node ``pusher`` SDK; returns ``{status, body}``."""
        result: dict[str, Any] = await self.call(
            "sdk_trigger",
            app=self._sdk_app(app, port, master_key),
            channels=channels,
            event=event,
            data=data,
            socket_id=socket_id,
        )
        return result

    async def sdk_send_to_user(self, app: App, port: int, user_id: str, event: str, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "sdk_send_to_user", app=self._sdk_app(app, port, None), user_id=user_id, event=event, data=data
        )
        return result

    async def sdk_terminate_user(self, app: App, port: int, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "sdk_terminate_user", app=self._sdk_app(app, port, None), user_id=user_id
        )
        return result

    async def resubscribe_rounds(
        self, client: str, app: App, port: int, channel: str, rounds: int, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """``rounds`` times: ``unsubscribe`` + ``subscribe`` in one tick, wait for the subscription, publish
        through the Node SDK and wait for the event (``js/driver.mjs``). Returns ``failed`` (the round that
        stalled, or None), ``stage`` and ``timings`` (ms to subscribed, ms from there to the event)."""
        result: dict[str, Any] = await self.call(
            "resubscribe_rounds",
            client=client,
            app=self._sdk_app(app, port, None),
            channel=channel,
            rounds=rounds,
            timeoutMs=int(timeout * 1000),
            timeout=timeout * rounds + 10,
        )
        return result

    async def subscribe_rounds(
        self, client: str, prefix: str, rounds: int, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """``rounds`` subscriptions to fresh channels ``{prefix}-{n}``, each timed to its success (then
        left): ``timings`` in ms."""
        result: dict[str, Any] = await self.call(
            "subscribe_rounds",
            client=client,
            prefix=prefix,
            rounds=rounds,
            timeoutMs=int(timeout * 1000),
            timeout=timeout * rounds + 10,
        )
        return result

    async def burst_rounds(
        self,
        sender: str,
        receiver: str,
        channel: str,
        event: str,
        *,
        rounds: int,
        count: int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """``rounds`` times: ``count`` client events in one tick; the receiver must get them in order.
        Returns ``failed`` (the round, or None), its ``order`` and ``timings`` (ms to the last arrival)."""
        result: dict[str, Any] = await self.call(
            "burst_rounds",
            sender=sender,
            receiver=receiver,
            channel=channel,
            event=event,
            rounds=rounds,
            count=count,
            timeoutMs=int(timeout * 1000),
            timeout=timeout * rounds + 10,
        )
        return result

    @staticmethod
    def _sdk_app(app: App, port: int, master_key: str | None) -> dict[str, Any]:
        return {"appId": app.id, "key": app.key, "secret": app.secret, "port": port, "masterKeyBase64": master_key}

    # -- waiting on reports ------------------------------------------------------------------------------

    def _find(self, match: Match, start: int = 0) -> int | None:
        for index in range(start, len(self.reports)):
            if index not in self._consumed and match(self.reports[index]):
                return index
        return None

    async def wait_for(self, match: Match, timeout: float, describe: str, client: str) -> Report:
        """The first unconsumed report that matches, consumed; ``AssertionError`` with the client's history
        if none arrives within ``timeout``."""
        found: int | None = None

        def ready() -> bool:
            nonlocal found
            found = self._find(match)
            return found is not None

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"{client}: no {describe} within {timeout}s; it saw:\n{self.history(client)}"
                ) from None
        assert found is not None
        self._consumed.add(found)
        return self.reports[found]

    def matching(self, match: Match) -> list[Report]:
        return [r for i, r in enumerate(self.reports) if i not in self._consumed and match(r)]

    def history(self, client: str, last: int = 30) -> str:
        lines = [json.dumps(r)[:300] for r in self.reports if r.get("client") == client]
        return "\n".join(lines[-last:]) or "(nothing)"

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("quit", timeout=2)
        await self.stop(wait=3)


class JsClient:
    """One named pusher-js client inside a :class:`NodeDriver`."""

    def __init__(self, driver: NodeDriver, name: str) -> None:
        self.driver = driver
        self.name = name

    def _match(self, kind: str, event: str | None = None, channel: str | None = None) -> Match:
        def match(report: Report) -> bool:
            return (
                report.get("client") == self.name
                and report["report"] == kind
                and (event is None or report.get("event") == event)
                and (channel is None or report.get("channel") == channel)
            )

        return match

    async def expect(
        self,
        event: str,
        channel: str | None = None,
        *,
        kind: str = "event",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Report:
        """Wait for ``event`` (on ``channel``) as a report of ``kind``: ``event`` (a channel callback),
        ``message`` (a raw frame), ``user`` (pusher.user) or ``watchlist``."""
        where = f" on {channel}" if channel else ""
        return await self.driver.wait_for(
            self._match(kind, event, channel), timeout, f"{kind} {event}{where}", self.name
        )

    async def expect_state(self, state: str, timeout: float = DEFAULT_TIMEOUT) -> Report:
        match = self._match("state")
        return await self.driver.wait_for(
            lambda r: match(r) and r["current"] == state, timeout, f"state {state}", self.name
        )

    async def expect_error(
        self, code: int | None, message: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Report:
        """A connection ``error`` with Pusher ``code`` (``None``: a ``pusher:error`` without code) whose
        text contains ``message``."""
        match = self._match("error")

        def matches(report: Report) -> bool:
            if not match(report) or error_code(report) != code:
                return False
            return message is None or message in (error_message(report) or "")

        return await self.driver.wait_for(matches, timeout, f"error {code} {message or ''}", self.name)

    async def assert_no(
        self, event: str, channel: str | None = None, *, kind: str = "message", within: float = 0.5
    ) -> None:
        """Nothing matching arrives within ``within`` seconds (default: no raw frame at all)."""
        await asyncio.sleep(within)
        seen = self.driver.matching(self._match(kind, event, channel))
        assert not seen, f"{self.name} unexpectedly got {seen}"

    def states(self) -> list[str]:
        return [r["current"] for r in self.driver.reports if self._match("state")(r)]

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.driver.call("info", client=self.name)
        return result

    async def socket_id(self) -> str:
        socket_id = (await self.info())["socket_id"]
        assert isinstance(socket_id, str)
        return socket_id

    async def subscribe(self, channel: str, *events: str, succeed: bool = True) -> Report | None:
        """Subscribe and bind ``events`` (plus the pusher:* channel events); by default wait for success."""
        await self.driver.call("subscribe", client=self.name, channel=channel, events=list(events))
        if succeed:
            return await self.expect("pusher:subscription_succeeded", channel)
        return None

    async def bind(self, channel: str, event: str) -> None:
        await self.driver.call("bind", client=self.name, channel=channel, event=event)

    async def unsubscribe(self, channel: str) -> None:
        await self.driver.call("unsubscribe", client=self.name, channel=channel)

    async def trigger(self, channel: str, event: str, data: Any) -> bool:
        """A client event through ``channel.trigger``; pusher-js returns False when it could not send."""
        return bool(await self.driver.call("trigger", client=self.name, channel=channel, event=event, data=data))

    async def members(self, channel: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.driver.call("members", client=self.name, channel=channel)
        return result

    async def signin(self) -> Report:
        await self.driver.call("signin", client=self.name)
        return await self.expect("pusher:signin_success", kind="message")

    async def disconnect(self) -> None:
        await self.driver.call("disconnect", client=self.name)
