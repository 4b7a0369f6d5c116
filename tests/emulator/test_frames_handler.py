"""The message function fed by the ordered frames queue (``functions/message/frames.py``): SQS FIFO batches
of ``$default`` frames, handled one connection at a time in order.

The events have the shape of the Lambda developer guide's FIFO example ("Using Lambda with Amazon SQS":
``attributes`` with ``MessageGroupId``, ``SequenceNumber``, ``MessageDeduplicationId``) plus the message
attributes the integration's request template sets (``connectionId``, ``requestTimeEpoch``). DynamoDB and
SQS are moto, the management API the recording stub (``conftest.py``).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from functions import runtime
from functions.message.handler import handler as message
from local_server.emulator.batch_response import Settlement, settle
from shared.auth import sign_channel
from tests.emulator.conftest import Aws
from tests.emulator.test_handlers import CONTEXT, frames_after, open_socket

_sequence = itertools.count(18_849_496_460_467_696_128)


def frame_record(connection_id: str, frame: dict[str, Any] | str, received_ms: int) -> dict[str, Any]:
    """One record of the frames queue, as the FIFO event source mapping hands it to the function."""
    body = frame if isinstance(frame, str) else json.dumps(frame)
    message_id = f"msg-{next(_sequence)}"
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}==",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(received_ms + 3),
            "SequenceNumber": str(next(_sequence)),
            "MessageGroupId": connection_id,
            "SenderId": "AROAXXXXXXXXXXXXXXXXX:apigateway",
            "MessageDeduplicationId": message_id,
            "ApproximateFirstReceiveTimestamp": str(received_ms + 5),
        },
        "messageAttributes": {
            "connectionId": {
                "stringValue": connection_id,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "requestTimeEpoch": {
                "stringValue": str(received_ms),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Number",
            },
        },
        "md5OfBody": "00000000000000000000000000000000",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sockless-frames.fifo",
        "awsRegion": "us-east-1",
    }


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def subscribe_frame(socket_id: str, channel: str) -> dict[str, Any]:
    auth = "app-key:" + sign_channel("app-secret", socket_id, channel)
    return {"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}


def test_unsubscribe_then_subscribe_in_one_batch_ends_subscribed(aws: Aws) -> None:
    socket_id = open_socket(aws, "spa-cid=")
    assert message(batch(frame_record("spa-cid=", subscribe_frame(socket_id, "private-view"), 1000)), CONTEXT) == {
        "batchItemFailures": []
    }
    unsubscribe = {"event": "pusher:unsubscribe", "data": {"channel": "private-view"}}
    result = message(
        batch(
            frame_record("spa-cid=", unsubscribe, 2000),
            frame_record("spa-cid=", subscribe_frame(socket_id, "private-view"), 2000),
        ),
        CONTEXT,
    )
    assert result == {"batchItemFailures": []}
    events = [f["event"] for f in frames_after(aws, "spa-cid=", 1)]
    assert events == ["pusher_internal:subscription_succeeded", "pusher_internal:subscription_succeeded"]

    other = open_socket(aws, "other-cid=")
    message(batch(frame_record("other-cid=", subscribe_frame(other, "private-view"), 3000)), CONTEXT)
    seen = len(aws.stub.json_frames("spa-cid="))
    message(
        batch(frame_record("other-cid=", {"event": "client-x", "channel": "private-view", "data": {}}, 3001)), CONTEXT
    )
    assert [f["event"] for f in frames_after(aws, "spa-cid=", seen)] == ["client-x"]  # still subscribed


def test_one_connections_frames_run_in_the_order_api_gateway_received_them(aws: Aws) -> None:
    a = open_socket(aws, "a-cid=")
    b = open_socket(aws, "b-cid=")
    message(
        batch(
            frame_record("a-cid=", subscribe_frame(a, "private-chat"), 1000),
            frame_record("b-cid=", subscribe_frame(b, "private-chat"), 1000),
        ),
        CONTEXT,
    )
    seen = len(aws.stub.json_frames("b-cid="))
    sent = [
        frame_record("a-cid=", {"event": "client-n", "channel": "private-chat", "data": {"n": n}}, 2000 + n // 2)
        for n in range(6)
    ]
    # The queue holds them swapped pairwise where the receive times differ (two SendMessage calls that
    # overtook each other): the function puts them back; equal times keep the queue's order.
    queued = [sent[1], sent[0], sent[2], sent[3], sent[5], sent[4]]
    assert message(batch(*queued), CONTEXT) == {"batchItemFailures": []}
    received = [json.loads(f["data"])["n"] for f in frames_after(aws, "b-cid=", seen)]
    assert received == [1, 0, 2, 3, 5, 4]  # each pair shares a millisecond: queue order, unchanged

    seen = len(aws.stub.json_frames("b-cid="))
    # 10 client events a second is the app's limit: these are the last 4.
    later = [
        frame_record("a-cid=", {"event": "client-m", "channel": "private-chat", "data": {"m": m}}, 3000 + m)
        for m in range(4)
    ]
    assert message(batch(later[2], later[0], later[3], later[1]), CONTEXT) == {"batchItemFailures": []}
    assert [json.loads(f["data"])["m"] for f in frames_after(aws, "b-cid=", seen)] == [0, 1, 2, 3]


def test_a_failed_frame_returns_it_and_its_connections_later_frames_and_no_other(aws: Aws) -> None:
    a = open_socket(aws, "a-cid=")
    open_socket(aws, "idle-cid=")
    # A new container (nothing cached) and no table: looking the connection up fails. (A store failure
    # inside the engine is the client's 4100, not a failed frame.)
    runtime.reset()
    aws.dynamodb.delete_table(TableName=aws.table_name)
    first = frame_record("a-cid=", subscribe_frame(a, "private-x"), 1000)
    second = frame_record("a-cid=", {"event": "pusher:unsubscribe", "data": {"channel": "private-x"}}, 1001)
    ping = frame_record("idle-cid=", {"event": "pusher:ping", "data": {}}, 1000)

    result = message(batch(first, ping, second), CONTEXT)

    assert result == {
        "batchItemFailures": [{"itemIdentifier": first["messageId"]}, {"itemIdentifier": second["messageId"]}]
    }
    assert aws.stub.json_frames("idle-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}


def test_a_record_without_a_connection_is_dropped_and_the_rest_handled(aws: Aws) -> None:
    open_socket(aws, "ping-cid=")
    stray = frame_record("x", {"event": "pusher:ping", "data": {}}, 1000)
    stray["messageAttributes"] = {}
    stray["attributes"].pop("MessageGroupId")
    assert message(batch(stray, frame_record("ping-cid=", '{"event":"pusher:ping","data":{}}', 1000)), CONTEXT) == {
        "batchItemFailures": []
    }
    assert aws.stub.json_frames("ping-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}


def test_a_frame_failing_mid_batch_is_returned_with_the_rest_of_its_group_as_lambda_asks_for_fifo(aws: Aws) -> None:
    # AWS: with a FIFO queue the function stops at a group's first failure and reports it and every later
    # message of the group; the emulator's mapping (batch_response.settle) finds no message deleted out of order.
    a = open_socket(aws, "a-cid=")
    open_socket(aws, "b-cid=")
    runtime.reset()
    aws.dynamodb.delete_table(TableName=aws.table_name)  # pings still work (no store), the rest of a's fail
    ping = {"event": "pusher:ping", "data": {}}
    records = [
        frame_record("a-cid=", ping, 1000),
        frame_record("b-cid=", ping, 1000),
        frame_record("a-cid=", subscribe_frame(a, "private-x"), 1001),
        frame_record("b-cid=", ping, 1001),
        frame_record("a-cid=", {"event": "pusher:unsubscribe", "data": {"channel": "private-x"}}, 1002),
    ]

    result = message(batch(*records), CONTEXT)

    ids = [r["messageId"] for r in records]
    assert result == {"batchItemFailures": [{"itemIdentifier": ids[2]}, {"itemIdentifier": ids[4]}]}
    assert settle(records, result, report_batch_item_failures=True, fifo=True) == Settlement(
        frozenset({ids[0], ids[1], ids[3]})
    )
    assert aws.stub.json_frames("a-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}
