"""The local server runs on uvloop or on asyncio's own loop (``event_loop``), and pusher-js sees no difference.

uvloop is the default when installed (it is in the ``server`` extra); asyncio's loop stays supported for
platforms without a uvloop wheel, so both are driven end to end here: a presence join, a client event between
two pusher-js clients and a REST publish from the official Python SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pusher
import pytest

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, ServerProcess]]:
    proc = ServerProcess({"apps": [DEFAULT_APP, NUMERIC_APP], "event_loop": request.param}).start()
    yield request.param, proc
    proc.cleanup()


async def test_presence_client_events_and_publishes_on_either_loop(
    js: NodeDriver, loop_server: tuple[str, ServerProcess]
) -> None:
    choice, server = loop_server
    app = App.of(NUMERIC_APP)
    alice = await js.client("alice", app, server.port, user={"user_id": "alice", "user_info": {"n": 1}})
    bob = await js.client("bob", app, server.port, user={"user_id": "bob", "user_info": {"n": 2}})
    await alice.subscribe("presence-room", "client-wave")
    await bob.subscribe("presence-room", "client-wave")
    added = await alice.expect("pusher:member_added", "presence-room")
    assert added["data"]["id"] == "bob"

    await bob.trigger("presence-room", "client-wave", {"from": "bob"})
    wave = await alice.expect("client-wave", "presence-room")
    assert wave["data"] == {"from": "bob"}

    backend = pusher.Pusher(
        app_id=app.id, key=app.key, secret=app.secret, ssl=False, host="127.0.0.1", port=server.port
    )
    await asyncio.to_thread(backend.trigger, "presence-room", "client-wave", {"from": "server"})
    for client in (alice, bob):
        event = await client.expect("client-wave", "presence-room")
        assert event["data"] == {"from": "server"}

    assert f"event loop: {choice}" in server.output()  # uvloop.Loop / asyncio.unix_events...
