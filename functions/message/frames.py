"""``$default`` frames through the SQS FIFO queue: one connection's frames handled one at a time, in order.

API Gateway puts every client frame on a FIFO queue (an AWS integration on ``$default``, ``MessageGroupId``
= the connectionId; docs/aws.md "Frames of one connection in order"), and the message function receives
them through an event source mapping. SQS hands a group's messages out in order and none of a group while a
batch holding some of it is in flight ("Using the message group ID with Amazon SQS FIFO Queues", SQS
developer guide; "Configuring scaling behavior for SQS event source mappings", Lambda developer guide), so
one connection's frames never run concurrently and never overtake each other.

A batch holds up to 10 records of possibly several connections. Each connection's records run in order,
the connections concurrently. Within one connection the records are put in the order API Gateway received
them (``requestTimeEpoch``, stable: equal times keep the queue's order), which only matters if two frames
entered the queue in another order than they arrived (docs/aws.md says when that can happen).

When a frame fails (an exception, not a protocol error: those are ``pusher:error`` frames to the client), it
and every later record of its connection go back in ``batchItemFailures``: SQS hands them out again, in
order, after the visibility timeout, and the connection's later frames wait for them (FIFO semantics; the
queue's ``maxReceiveCount`` bounds the wait, then the frame goes to the dead-letter queue).

With ``-c ordered_frames=stream`` the records come from the frames table's DynamoDB stream instead
(cdk/components/frames_stream.py): one item per connection, overwritten by each frame, so the stream hands a
connection's frames out in order. Such a record carries the frame in its ``NewImage`` (``frame``, base64, with
``connectionId``, ``requestTimeEpoch`` and ``messageId``), and is named by its ``SequenceNumber``. A stream has
no per-record retry: Lambda checkpoints the batch up to the lowest sequence number reported failed and hands
everything from there out again (Lambda developer guide, "Configuring partial batch response with DynamoDB and
Lambda"). So each connection reports only its first failed record, and the other connections' records after
it in the batch run again: at least once, never out of order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from functions.runtime import Container

log = logging.getLogger("sockless.message")

# The message attributes the integration's request template sets (cdk/components/websocket.py).
CONNECTION_ID = "connectionId"
REQUEST_TIME = "requestTimeEpoch"
# And the stream items' others (cdk/components/frames_stream.py).
FRAME = "frame"
MESSAGE_ID = "messageId"


def is_stream_record(record: Mapping[str, Any]) -> bool:
    """A DynamoDB stream record (the frames table's), not an SQS message."""
    return record.get("eventSource") == "aws:dynamodb"


def _image(record: Mapping[str, Any], name: str) -> str | None:
    """An attribute of a stream record's ``NewImage``, as text (Lambda's event shows DynamoDB JSON: ``{"S": ..}``,
    ``{"N": ..}``, ``{"B": base64}``; Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB")."""
    value = ((record.get("dynamodb") or {}).get("NewImage") or {}).get(name) or {}
    found = next((value[kind] for kind in ("S", "N", "B") if kind in value), None)
    return str(found) if found is not None else None


def _attribute(record: Mapping[str, Any], name: str) -> str | None:
    if is_stream_record(record):
        return _image(record, name)
    value = (record.get("messageAttributes") or {}).get(name) or {}
    found = value.get("stringValue")
    return str(found) if found is not None else None


def record_id(record: Mapping[str, Any]) -> str:
    """What the mapping knows a record by: an SQS ``messageId``, a stream record's ``SequenceNumber``."""
    if is_stream_record(record):
        return str((record.get("dynamodb") or {}).get("SequenceNumber") or "")
    return str(record.get("messageId") or "")


def connection_of(record: Mapping[str, Any]) -> str | None:
    """The connectionId a record came from: its attribute, else the FIFO group (the same value)."""
    return _attribute(record, CONNECTION_ID) or (record.get("attributes") or {}).get("MessageGroupId")


def received_at(record: Mapping[str, Any]) -> int:
    """API Gateway's receive time of the frame (ms), 0 when the record does not say."""
    value = _attribute(record, REQUEST_TIME)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def body_of(record: Mapping[str, Any]) -> str:
    """The frame: an SQS message's body, or a stream record's base64 ``frame`` attribute decoded."""
    if not is_stream_record(record):
        return str(record.get("body") or "")
    encoded = _image(record, FRAME) or ""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""


def as_message_event(record: Mapping[str, Any], connection_id: str) -> dict[str, Any]:
    """The ``$default`` event API Gateway would have built for this frame: what ``_handle`` reads."""
    context = {
        "routeKey": "$default",
        "eventType": "MESSAGE",
        "connectionId": connection_id,
        "requestTimeEpoch": received_at(record),
        "messageId": _image(record, MESSAGE_ID) if is_stream_record(record) else record.get("messageId"),
    }
    return {"requestContext": context, "body": body_of(record), "isBase64Encoded": False}


async def _frame(current: Container, record: Mapping[str, Any], connection_id: str) -> None:
    from functions.message.handler import _handle, is_ping
    from shared.protocol.frames import PONG

    event = as_message_event(record, connection_id)
    if is_ping(event):
        await asyncio.to_thread(current.management_call, "post_to_connection", ConnectionId=connection_id, Data=PONG)
        return
    await _handle(current, event)


async def _connection(current: Container, connection_id: str, records: list[Mapping[str, Any]]) -> list[str]:
    """One connection's records in order; the ids the mapping must hand out again: from SQS the failed one and
    every later one, from a stream the failed one (Lambda retries everything after it anyway)."""
    for index, record in enumerate(records):
        try:
            await _frame(current, record, connection_id)
        except Exception:
            log.exception(
                "frame %s of connection %s failed; it and %d later ones are retried",
                record_id(record),
                connection_id,
                len(records) - index - 1,
            )
            if is_stream_record(record):
                return [record_id(record)]
            return [record_id(r) for r in records[index:]]
    return []


async def handle_batch(current: Container, records: list[Mapping[str, Any]]) -> list[str]:
    """Every connection of the batch concurrently, each one's frames in order; returns the failed ids."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        connection_id = connection_of(record)
        if connection_id is None:
            log.warning("frame %s carries no connectionId; dropped", record_id(record))
            continue
        groups.setdefault(connection_id, []).append(record)
    for group in groups.values():
        group.sort(key=received_at)  # stable: frames received in the same millisecond keep the queue's order
    results = await asyncio.gather(*(_connection(current, cid, group) for cid, group in groups.items()))
    return [message_id for failed in results for message_id in failed]


def batch_response(current: Container, event: Mapping[str, Any]) -> dict[str, Any]:
    """The event source mapping's invocation: ``batchItemFailures`` (``ReportBatchItemFailures``). For a stream,
    the lowest failed sequence number only: Lambda retries from there whatever else is named."""
    records = list(event.get("Records") or [])
    failed = current.run(handle_batch(current, records))
    if failed and records and is_stream_record(records[0]):
        failed = [min(failed, key=int)]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
