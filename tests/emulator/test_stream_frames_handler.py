"""The message function fed by the ordered frames stream (``-c ordered_frames=stream``): DynamoDB stream batches
of ``$default`` frames, one connection's in order, failures reported by ``SequenceNumber``.

The records have the shape of the Lambda developer guide's DynamoDB example event ("Using AWS Lambda with
Amazon DynamoDB": ``eventName``, ``dynamodb.Keys``, ``NewImage``, ``SequenceNumber``, ``eventSourceARN``), with
the item the integration's request template writes (cdk/components/frames_stream.py): ``connectionId``,
``frame`` (base64), ``requestTimeEpoch``, ``messageId``. DynamoDB is moto, the management API the recording
stub (``conftest.py``).
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from functions import runtime
from functions.message.handler import handler as message
from tests.emulator.conftest import Aws
from tests.emulator.test_frames_handler import batch, subscribe_frame
from tests.emulator.test_handlers import CONTEXT, frames_after, open_socket

_sequence = itertools.count(400_000_000_000_000_000_001)
STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/sockless-FramesStreamTable/stream/2024-01-01T00:00:00.000"


def stream_record(connection_id: str, frame: dict[str, Any], received_ms: int) -> dict[str, Any]:
    """One record of the frames table's stream, as the DynamoDB event source mapping hands it over."""
    sequence = str(next(_sequence))
    image = {
        "connectionId": {"S": connection_id},
        "frame": {"B": base64.b64encode(json.dumps(frame).encode()).decode()},
        "requestTimeEpoch": {"N": str(received_ms)},
        "messageId": {"S": f"m{sequence[-6:]}="},
        "expires": {"N": str(received_ms // 1000 + 86400)},
    }
    return {
        "eventID": sequence[-8:],
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": received_ms // 1000,
            "Keys": {"connectionId": {"S": connection_id}},
            "NewImage": image,
            "SequenceNumber": sequence,
            "SizeBytes": 180,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": STREAM,
    }


def test_unsubscribe_then_subscribe_from_the_stream_ends_subscribed(aws: Aws) -> None:
    socket_id = open_socket(aws, "spa-cid=")
    unsubscribe = {"event": "pusher:unsubscribe", "data": {"channel": "private-view"}}
    result = message(
        batch(
            stream_record("spa-cid=", subscribe_frame(socket_id, "private-view"), 1000),
            stream_record("spa-cid=", unsubscribe, 2000),
            stream_record("spa-cid=", subscribe_frame(socket_id, "private-view"), 2000),
        ),
        CONTEXT,
    )
    assert result == {"batchItemFailures": []}
    events = [f["event"] for f in frames_after(aws, "spa-cid=", 1)]
    assert events == ["pusher_internal:subscription_succeeded", "pusher_internal:subscription_succeeded"]


def test_a_failed_stream_frame_reports_the_lowest_failed_sequence_number_only(aws: Aws) -> None:
    # Lambda checkpoints before the lowest sequence number named and retries everything from there
    # ("Configuring partial batch response with DynamoDB and Lambda"): naming later ones would change nothing.
    a = open_socket(aws, "a-cid=")
    b = open_socket(aws, "b-cid=")
    runtime.reset()
    aws.dynamodb.delete_table(TableName=aws.table_name)  # pings still work (no store), the rest fail
    ping = {"event": "pusher:ping", "data": {}}
    records = [
        stream_record("a-cid=", ping, 1000),
        stream_record("b-cid=", ping, 1000),
        stream_record("b-cid=", subscribe_frame(b, "private-y"), 1001),
        stream_record("a-cid=", subscribe_frame(a, "private-x"), 1001),
        stream_record("a-cid=", ping, 1002),
    ]

    result = message(batch(*records), CONTEXT)

    assert result == {"batchItemFailures": [{"itemIdentifier": records[2]["dynamodb"]["SequenceNumber"]}]}
    # a's ping after its failed subscribe was not run: its connection stopped at the failure, in order.
    assert [f["event"] for f in aws.stub.json_frames("a-cid=")].count("pusher:pong") == 1
    assert aws.stub.json_frames("b-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}


def test_a_ttl_removal_record_without_a_new_image_is_dropped(aws: Aws) -> None:
    open_socket(aws, "ping-cid=")
    removed = stream_record("gone-cid=", {"event": "pusher:ping", "data": {}}, 1000)
    removed["eventName"] = "REMOVE"
    removed["dynamodb"].pop("NewImage")
    live = stream_record("ping-cid=", {"event": "pusher:ping", "data": {}}, 1000)
    assert message(batch(removed, live), CONTEXT) == {"batchItemFailures": []}
    assert aws.stub.json_frames("ping-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}
