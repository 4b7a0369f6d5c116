"""The ordered frames queue's request template (cdk/components/frames.py) rendered as API Gateway does and
read back as SQS's query API reads it (``local_server/emulator/sqs_integration.py``): every frame arrives
byte for byte, whatever it holds, grouped by its connection."""

from __future__ import annotations

import json

from cdk.components.frames import REQUEST_TEMPLATE
from local_server.emulator.sqs_integration import render, send_message_arguments

QUEUE = "http://127.0.0.1:1/123456789012/sockless-FramesQueue.fifo"


def test_a_frame_with_form_and_unicode_characters_arrives_unchanged_with_its_connection() -> None:
    frame = json.dumps({"event": "client-x", "channel": "private-a", "data": {"q": "a=1&b=2+3 %20 é ✓ \"'"}})
    context = {"connectionId": "L0SM9+cO/vHcCIhw=", "messageId": "ZRm+kc0E/oAMCJ0Q=", "requestTimeEpoch": 1731324924561}

    arguments = send_message_arguments(render(REQUEST_TEMPLATE, context, frame), QUEUE)

    assert arguments == {
        "QueueUrl": QUEUE,
        "MessageBody": frame,
        "MessageGroupId": "L0SM9+cO/vHcCIhw=",
        "MessageDeduplicationId": "ZRm+kc0E/oAMCJ0Q=",
        "MessageAttributes": {
            "connectionId": {"DataType": "String", "StringValue": "L0SM9+cO/vHcCIhw="},
            "requestTimeEpoch": {"DataType": "Number", "StringValue": "1731324924561"},
        },
    }


def test_two_identical_frames_are_two_messages() -> None:
    frame = '{"event":"client-n","channel":"private-a","data":{}}'
    first = send_message_arguments(render(REQUEST_TEMPLATE, {"connectionId": "c=", "messageId": "m1="}, frame), QUEUE)
    second = send_message_arguments(render(REQUEST_TEMPLATE, {"connectionId": "c=", "messageId": "m2="}, frame), QUEUE)
    assert first["MessageDeduplicationId"] != second["MessageDeduplicationId"]
    assert first["MessageGroupId"] == second["MessageGroupId"] == "c="
