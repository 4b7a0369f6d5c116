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


@pytest.fixture
def rounds() -> tuple[int, int]:
    """Fewer rounds than on the local server (200 and 100): on Lambda the order does not come from timing
    but from the FIFO queue's one message group per connection (docs/aws.md), which every round exercises
    the same way, and each round costs four to eight invocations (~0.15 s here)."""
    return 50, 25
