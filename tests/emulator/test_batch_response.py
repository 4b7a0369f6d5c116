"""What Lambda's SQS event source mapping deletes after a batch (``local_server/emulator/batch_response.py``):
partial batch responses as the Lambda developer guide describes them, with FIFO order kept or broken."""

from __future__ import annotations

from typing import Any

import pytest

from local_server.emulator.batch_response import Settlement, settle


def record(message_id: str, group: str | None = None) -> dict[str, Any]:
    attributes = {"ApproximateReceiveCount": "1"} | ({"MessageGroupId": group} if group else {})
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}", "body": "", "attributes": attributes}


def failures(*ids: Any) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


STANDARD = [record("a"), record("b"), record("c")]
ALL = frozenset({"a", "b", "c"})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(None, Settlement(ALL), id="no-answer-complete-success"),
        pytest.param({"statusCode": 200}, Settlement(ALL), id="no-list-complete-success"),
        pytest.param({"batchItemFailures": None}, Settlement(ALL), id="null-list-complete-success"),
        pytest.param(failures(), Settlement(ALL), id="empty-list-complete-success"),
        pytest.param(failures("b"), Settlement(frozenset({"a", "c"})), id="named-one-stays"),
        pytest.param(failures(""), Settlement(frozenset(), "bad itemIdentifier in {'itemIdentifier': ''}"), id="empty"),
        pytest.param(
            failures(None), Settlement(frozenset(), "bad itemIdentifier in {'itemIdentifier': None}"), id="null"
        ),
        pytest.param(
            {"batchItemFailures": [{"id": "b"}]},
            Settlement(frozenset(), "bad itemIdentifier in {'id': 'b'}"),
            id="bad-key-name",
        ),
        pytest.param(
            failures("zz"), Settlement(frozenset(), "itemIdentifier 'zz' is no message of the batch"), id="unknown-id"
        ),
        pytest.param(
            {"batchItemFailures": "b"}, Settlement(frozenset(), "batchItemFailures is not a list"), id="not-a-list"
        ),
    ],
)
def test_a_partial_batch_response_deletes_what_lambda_deletes(answer: Any, expected: Settlement) -> None:
    assert settle(STANDARD, answer, report_batch_item_failures=True, fifo=False) == expected


def test_without_report_batch_item_failures_the_answer_is_not_read() -> None:
    assert settle(STANDARD, failures("zz"), report_batch_item_failures=False, fifo=False) == Settlement(ALL)


def test_fifo_the_failed_message_and_the_rest_of_its_group_stay_and_other_groups_go_on() -> None:
    batch = [
        record("g1-1", "g1"),
        record("g2-1", "g2"),
        record("g1-2", "g1"),
        record("g1-3", "g1"),
        record("g2-2", "g2"),
    ]
    settled = settle(batch, failures("g1-2", "g1-3"), report_batch_item_failures=True, fifo=True)
    assert settled == Settlement(frozenset({"g1-1", "g2-1", "g2-2"}))


def test_fifo_a_later_message_of_a_failed_group_reported_successful_is_deleted_and_named_out_of_order() -> None:
    # Lambda deletes what the function says succeeded; the group then goes on without its failed message.
    batch = [record("g1-1", "g1"), record("g1-2", "g1"), record("g1-3", "g1"), record("g2-1", "g2")]
    settled = settle(batch, failures("g1-1"), report_batch_item_failures=True, fifo=True)
    assert settled == Settlement(frozenset({"g1-2", "g1-3", "g2-1"}), out_of_order=("g1-2", "g1-3"))
    assert settle(batch, failures("g1-1"), report_batch_item_failures=True, fifo=False).out_of_order == ()
