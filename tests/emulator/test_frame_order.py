"""The frame-order tests of ``tests/e2e/test_frame_order.py`` on the Lambda path: pusher-js against the
emulator, where ``$default`` frames go through the SQS FIFO queue (``-c ordered_frames=fifo``, the default) or
the frames table's DynamoDB stream (``-c ordered_frames=stream``) to the message function (docs/aws.md
"Frames of one connection in order").

The same rounds as on the local server, as issue #20 asks of both, for each ordering transport: 200
unsubscribe + subscribe rounds, each followed by a publish that must arrive, and 100 bursts of 8 client events
in order (the ``rounds`` fixture of the e2e module). On Lambda the order comes from the FIFO queue's one
message group per connection, or the stream's one item per connection, rather than from timing, but a round
that loses a frame to a retry, a partial batch response or a cold container shows only as often as rounds are
run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_frame_order import (  # noqa: F401
    ORDER_APP,
    rounds,
    test_a_burst_of_client_events_reaches_the_other_member_in_the_order_sent,
    test_unsubscribe_then_subscribe_back_to_back_ends_subscribed_every_time,
)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((), id="fifo"),
        pytest.param(("--cdk-context", "ordered_frames=stream"), id="stream"),
    ],
)
def order_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The emulator with each ordering transport of ``$default`` (the e2e module's fixture, parametrized)."""
    proc = ServerProcess({"apps": [ORDER_APP]}, args=request.param).start(timeout=120)
    yield proc
    proc.cleanup()
