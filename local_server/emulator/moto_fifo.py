"""moto's SQS FIFO delivery corrected where it differs from SQS: messages of one group that come back together
after their visibility timeout are handed out again in the queue's order.

moto 5 keeps the messages it handed out in ``pending_messages`` until a later ``ReceiveMessage`` finds them
visible again, and skips a FIFO message whose group still has a pending one. When several messages of a
group come back at once (a batch whose failed message was reported with the rest of its group, as AWS asks
for FIFO partial batch responses), the first of them is dropped from the pending set while the others are
still in it, so it is skipped as if its group were in flight; only the last one comes out: 5 before 3 and 4
(``tests/emulator/test_fifo_mapping.py``). SQS hands a group's messages out in order ("FIFO queue delivery
logic", Amazon SQS developer guide:
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html).
The correction: before a receive, every message visible again stops being pending, so the group counts as
in flight only while one of its messages really is.
"""

from __future__ import annotations

import functools
from typing import Any

_MARK = "_sockless_fifo_order"


def install() -> None:
    """Patch moto's ``SQSBackend.receive_message`` in this process (idempotent)."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            for message in [m for m in queue.pending_messages if m.visible]:
                queue.pending_messages.discard(message)
        return original(self, queue_name, *args, **kwargs)

    setattr(receive_message, _MARK, True)
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
