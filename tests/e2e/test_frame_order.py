"""One connection's frames take effect in the order the client sent them (issue #20, docs/aws.md "Frames
of one connection in order").

pusher-js sends ``pusher:unsubscribe`` and ``pusher:subscribe`` back to back when a view is left and entered
again; handled in the other order, the connection ends unsubscribed while pusher-js waits for a
``subscription_succeeded`` that never comes. A burst of client events from one sender must reach the others
in the order it was sent. Both are looped inside the Node driver (``js/driver.mjs``) so that hundreds of
rounds stay within a few seconds; ``tests/emulator/test_frame_order.py`` runs the same tests on the Lambda
path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import DEFAULT_APP
from tests.e2e.jsdriver import App, JsClient, NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

# Client events allowed well above a burst per round (the default limit, 10 a second, would refuse them).
ORDER_APP = {**DEFAULT_APP, "id": "order-app", "key": "order-key", "max_client_events_per_second": 100_000}
RESUBSCRIBE_ROUNDS = 200
BURST_ROUNDS = 100
BURST = 8
# The first connection and subscription start the emulator's cold containers; what is tested comes after.
WARM = 60.0
# A round that waits this long is stalled (a lost subscription never arrives); on a loaded machine the
# emulator's rounds take up to a few seconds.
STALL = 20.0


async def _connected(js: NodeDriver, name: str, app: App, port: int) -> JsClient:
    client = await js.client(name, app, port, connected=False)
    await client.expect_state("connected", timeout=WARM)
    return client


async def _subscribed(client: JsClient, channel: str) -> None:
    await client.subscribe(channel, succeed=False)
    await client.expect("pusher:subscription_succeeded", channel, timeout=WARM)


@pytest.fixture
def rounds() -> tuple[int, int]:
    """How many unsubscribe/subscribe rounds and bursts: the local server's races show within hundreds."""
    return RESUBSCRIBE_ROUNDS, BURST_ROUNDS


@pytest.fixture(scope="module")
def order_server() -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [ORDER_APP]}).start(timeout=60)
    yield proc
    proc.cleanup()


async def test_unsubscribe_then_subscribe_back_to_back_ends_subscribed_every_time(
    js: NodeDriver, order_server: ServerProcess, rounds: tuple[int, int]
) -> None:
    app = App.of(ORDER_APP)
    client = await _connected(js, "spa", app, order_server.port)
    await _subscribed(client, "private-view")

    result = await js.resubscribe_rounds("spa", app, order_server.port, "private-view", rounds[0], timeout=STALL)

    assert result["failed"] is None, f"round {result['failed']} stalled at {result['stage']}"
    assert len(result["timings"]) == rounds[0]


async def test_a_burst_of_client_events_reaches_the_other_member_in_the_order_sent(
    js: NodeDriver, order_server: ServerProcess, rounds: tuple[int, int]
) -> None:
    app = App.of(ORDER_APP)
    alice = await _connected(js, "alice", app, order_server.port)
    bob = await _connected(js, "bob", app, order_server.port)
    await _subscribed(alice, "private-burst")
    await _subscribed(bob, "private-burst")

    result = await js.burst_rounds(
        "alice", "bob", "private-burst", "client-n", rounds=rounds[1], count=BURST, timeout=STALL
    )

    assert result["failed"] is None, f"round {result['failed']} arrived as {result['order']}"
    assert len(result["timings"]) == rounds[1]
