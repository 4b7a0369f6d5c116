"""The frame-order tests of ``tests/e2e/test_frame_order.py`` on the Lambda path: pusher-js against the
emulator, where ``$default`` frames go through the SQS FIFO queue to the message function (docs/aws.md
"Frames of one connection in order").

The same rounds as on the local server, as issue #20 asks of both: 200 unsubscribe + subscribe rounds, each
followed by a publish that must arrive, and 100 bursts of 8 client events in order (the ``rounds`` fixture of
the e2e module). On Lambda the order comes from the FIFO queue's one message group per connection rather
than from timing, but a round that loses a frame to a retry, a partial batch response or a cold container
shows only as often as rounds are run."""

from __future__ import annotations

import pytest

from tests.e2e.test_frame_order import (  # noqa: F401
    order_server,
    rounds,
    test_a_burst_of_client_events_reaches_the_other_member_in_the_order_sent,
    test_unsubscribe_then_subscribe_back_to_back_ends_subscribed_every_time,
)

pytestmark = pytest.mark.e2e
