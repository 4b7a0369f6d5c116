"""The frame-order tests of ``tests/e2e/test_frame_order.py`` on the Lambda path: pusher-js against the
emulator, where ``$default`` frames go through the SQS FIFO queue to the message function (docs/aws.md
"Frames of one connection in order")."""

from __future__ import annotations

import pytest

from tests.e2e.test_frame_order import (  # noqa: F401
    order_server,
    test_a_burst_of_client_events_reaches_the_other_member_in_the_order_sent,
    test_unsubscribe_then_subscribe_back_to_back_ends_subscribed_every_time,
)

pytestmark = pytest.mark.e2e
