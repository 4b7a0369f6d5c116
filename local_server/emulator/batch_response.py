"""What Lambda's SQS event source mapping makes of a function's answer to a batch: which messages it deletes.

AWS Lambda developer guide, "Handling errors for an SQS event source in Lambda" (partial batch responses,
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html), as the emulator applies it:

- Without ``ReportBatchItemFailures`` on the mapping the answer is not read: the batch succeeded.
- With it, no answer, no ``batchItemFailures`` or an empty list is a complete success; an identifier that
  is empty, missing, not a string or names no message of the batch (and a ``batchItemFailures`` that is not
  a list) makes the whole batch a failure: nothing is deleted, every message comes back.
- Otherwise every message not named is deleted.
- FIFO queues: a function "should stop processing messages after the first failure and return all failed
  and unprocessed messages" so the queue's order holds. Lambda does not check it: a later message of the
  group reported successful is deleted and the group goes on without the failed one, out of order. The
  emulator does the same, and reports each such message (``Settlement.out_of_order``) so a test sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Settlement:
    """The batch's outcome: the message ids Lambda deletes; why it failed whole (``invalid``); and, on a FIFO
    queue, the ids deleted although an earlier message of their group failed."""

    deleted: frozenset[str]
    invalid: str | None = None
    out_of_order: tuple[str, ...] = field(default=())


def group_of(record: Mapping[str, Any]) -> str | None:
    group = (record.get("attributes") or {}).get("MessageGroupId")
    return str(group) if group is not None else None


def settle(
    records: Sequence[Mapping[str, Any]], answer: Any, *, report_batch_item_failures: bool, fifo: bool
) -> Settlement:
    """``records`` are the batch as the function got it (in queue order), ``answer`` what it returned."""
    ids = [str(r["messageId"]) for r in records]
    everything = frozenset(ids)
    if not report_batch_item_failures or not isinstance(answer, Mapping):
        return Settlement(everything)
    items = answer.get("batchItemFailures")
    if not items:
        return Settlement(everything)
    if not isinstance(items, list):
        return Settlement(frozenset(), invalid="batchItemFailures is not a list")
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or not identifier:
            return Settlement(frozenset(), invalid=f"bad itemIdentifier in {item!r}")
        if identifier not in everything:
            return Settlement(frozenset(), invalid=f"itemIdentifier {identifier!r} is no message of the batch")
        failed.add(identifier)
    out_of_order: list[str] = []
    if fifo:
        stopped: set[str] = set()  # groups with a failed message earlier in the batch
        for record, message_id in zip(records, ids, strict=True):
            group = group_of(record)
            if message_id in failed:
                if group is not None:
                    stopped.add(group)
            elif group in stopped:
                out_of_order.append(message_id)
    return Settlement(everything - failed, out_of_order=tuple(out_of_order))
