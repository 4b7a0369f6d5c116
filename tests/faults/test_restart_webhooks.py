"""#19.7: Redis restarts empty under a presence channel; its members reconnect (4200). A webhook receiver never
sees member_added or channel_occupied twice without the removal between: members back within the webhook
delay cancel both, and one who stays away is reported removed, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP
from tests.redis.conftest import RedisServer, node_config
from tests.serverproc import ServerProcess
from tests.webhooks.support import PusherSocket, Receiver

pytestmark = pytest.mark.redis

CHANNEL = "presence-room"
USERS = [f"user-{n}" for n in range(5)]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = await Receiver().start()
    yield hooks
    await hooks.stop()


def membership_log(receiver: Receiver) -> list[tuple[str, str]]:
    """(event name, user id or channel) in the order the receiver got them."""
    return [
        (event["name"], event.get("user_id") or event["channel"])
        for request in receiver.at("/hook")
        for event in request.events
    ]


def assert_alternating(log: list[tuple[str, str]]) -> None:
    """Per member and per channel: added, removed, added... never two of a kind in a row."""
    state: dict[str, str] = {}
    for name, who in log:
        assert state.get(who) != name, f"{name} twice for {who} without the opposite between: {log}"
        state[who] = name


async def join(http: aiohttp.ClientSession, node: ServerProcess, app: dict[str, object], user: str) -> PusherSocket:
    socket = await PusherSocket.connect(http, node.ws_url, app)
    await socket.subscribe(CHANNEL, user_id=user)
    return socket


async def test_members_who_reconnect_after_an_empty_restart_cause_no_webhooks_one_who_does_not_is_removed(
    redis: RedisServer, receiver: Receiver
) -> None:
    app = {
        **DEFAULT_APP,
        "webhooks": [
            {
                "url": receiver.url(),
                "event_types": ["member_added", "member_removed", "channel_occupied", "channel_vacated"],
            }
        ],
    }
    config = node_config(redis.url, "restart", apps=[app], webhooks={"delay_seconds": 2.0})
    node = ServerProcess(config).start()
    try:
        async with aiohttp.ClientSession() as http:
            sockets = [await join(http, node, app, user) for user in USERS]
            await receiver.wait_for(lambda: len(membership_log(receiver)) == len(USERS) + 1, timeout=10)

            redis.kill()
            redis.start()  # the same port, empty
            # The node finds its sockets gone from the store and closes them for reconnecting (4200).
            for socket in sockets:
                message = await socket.ws.receive(timeout=30)
                while message.type is aiohttp.WSMsgType.TEXT:
                    message = await socket.ws.receive(timeout=30)
                assert socket.ws.close_code == 4200
            # All but the last come back at once, as pusher-js does on 4200.
            back = [await join(http, node, app, user) for user in USERS[:-1]]
            await receiver.wait_for(lambda: ("member_removed", USERS[-1]) in membership_log(receiver), timeout=15)
            await asyncio.sleep(2.5)  # a webhook delay more: anything else due would have arrived
            log = membership_log(receiver)
            assert_alternating(log)
            assert log[len(USERS) + 1 :] == [("member_removed", USERS[-1])], json.dumps(log)
            for socket in back:
                await socket.close()
    finally:
        node.cleanup()
