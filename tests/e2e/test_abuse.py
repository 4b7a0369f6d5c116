"""A connection that keeps exceeding the client-event limit is closed with 4301 (docs/cost.md#abuse): each
of its frames is refused with a ``pusher:error`` 4301 while it stays under ``max_client_event_refusals``
refusals in the window, then the next refusal says it is closing and the server closes the connection.
``tests/emulator/test_aws_behaviour.py`` runs the same client against the Lambda path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from shared.auth import sign_channel
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

ABUSIVE = {
    "id": "abuse",
    "key": "abuse-key",
    "secret": "abuse-secret",
    "enable_client_messages": True,
    "max_client_events_per_second": 2,
    "max_client_event_refusals": 3,
}


async def abuse(server: ServerProcess, events: int = 20) -> tuple[list[dict[str, Any]], int | None]:
    """Subscribe, send ``events`` client events at once; the ``pusher:error`` data received and the close code."""
    url = f"{server.ws_url}/app/{ABUSIVE['key']}?protocol=7&client=test"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        established = await ws.receive_json(timeout=30)
        socket_id = json.loads(established["data"])["socket_id"]
        auth = f"{ABUSIVE['key']}:{sign_channel(str(ABUSIVE['secret']), socket_id, 'private-abuse')}"
        await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "private-abuse", "auth": auth}})
        while (await ws.receive_json(timeout=30))["event"] != "pusher_internal:subscription_succeeded":
            pass
        for n in range(events):
            await ws.send_json({"event": "client-n", "channel": "private-abuse", "data": {"n": n}})
        errors: list[dict[str, Any]] = []
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return errors, ws.close_code
            frame = json.loads(msg.data)
            if frame["event"] == "pusher:error":
                errors.append(frame["data"])


async def test_a_connection_that_keeps_exceeding_the_client_event_limit_is_closed_with_4301(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server({"apps": [ABUSIVE]})
    errors, code = await abuse(server)
    assert code == 4301  # pusher-js: a 4300+ close is "refused", no reconnect loop
    assert [e["code"] for e in errors] == [4301] * 4  # three refusals kept open, the fourth closes
    assert "closing" in errors[-1]["message"]
