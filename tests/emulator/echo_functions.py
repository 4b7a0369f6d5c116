"""Tiny Lambda functions that only observe and echo, registered in place of the real ones to test the
emulator's own contract (what API Gateway, the management API, Invoke and the SQS mapping do) apart from
the handlers. They run in place of the template's handlers (``--replace-handler``), with those functions'
environment, credentials and IAM policies, and reach the emulator exactly as the real handlers do: boto3
with the variables the template sets (``SOCKLESS_AWS__*``) and the endpoints the emulator gives every
container (``AWS_ENDPOINT_URL_*``); what they see is appended as JSON lines to the file named by ``ECHO_LOG``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3


def _aws(name: str) -> str:
    return os.environ[f"SOCKLESS_AWS__{name.upper()}"]


def _log(kind: str, event: Any) -> None:
    with open(os.environ["ECHO_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"kind": kind, "event": event}) + "\n")


def _management() -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=_aws("management_endpoint_url"))


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    queue = {
        "queue_url": os.environ["SOCKLESS_QUEUE__QUEUE_URL"],
        "endpoint_url": os.environ["AWS_ENDPOINT_URL_SQS"],
        "region": os.environ["AWS_REGION"],
    }
    _log("connect", {**event, "queue": queue})
    query = event.get("queryStringParameters") or {}
    if query.get("reject"):
        return {"statusCode": 401}
    boto3.client("lambda").invoke(  # the endpoint: AWS_ENDPOINT_URL_LAMBDA, as every container has
        FunctionName=_aws("welcome_function"),
        InvocationType="Event",
        Payload=json.dumps({"connection_id": event["requestContext"]["connectionId"]}).encode(),
    )
    return {"statusCode": 200}


def welcome(event: dict[str, Any], context: Any) -> dict[str, Any]:
    client = _management()
    gone = 0
    deadline = time.monotonic() + 3
    while True:
        try:
            client.post_to_connection(
                ConnectionId=event["connection_id"],
                Data=json.dumps({"event": "welcome", "gone_before_open": gone}).encode(),
            )
            break
        except client.exceptions.GoneException:
            gone += 1
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    _log("welcome", {"gone": gone})
    return {"gone": gone}


def message(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _log("message", event)
    body = event.get("body") or ""
    connection_id = event["requestContext"]["connectionId"]
    client = _management()
    if body == "boom":
        raise RuntimeError("boom")
    if body == "delete":
        client.delete_connection(ConnectionId=connection_id)
    elif body == "info":
        info = client.get_connection(ConnectionId=connection_id)
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(info["Identity"]).encode())
    elif body == "big":
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))
        except client.exceptions.PayloadTooLargeException:
            client.post_to_connection(ConnectionId=connection_id, Data=b'{"event":"too large"}')
    else:
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps({"echo": body}).encode())
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _log("disconnect", event)
    return {"statusCode": 200}


def http_api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-echo": "1"},
        "body": json.dumps(event),
    }


def webhooks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails the records whose body says ``fail``, so SQS hands them out again."""
    _log("webhooks", event)
    failed = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]
    return {"batchItemFailures": failed}


def customer_hook(event: dict[str, Any], context: Any) -> None:
    """A customer's webhook Lambda (Sockudo's ``lambda`` target): receives the Pusher webhook body."""
    _log("customer_hook", event)


def invoke_customer_hook(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A queue reader that is not the webhook worker (the message function's place, reading the frames
    queue) trying to invoke the customer's webhook Lambda: what IAM answers is logged per record."""
    from botocore.exceptions import ClientError

    for record in event.get("Records", []):
        try:
            boto3.client("lambda").invoke(FunctionName=record["body"], InvocationType="Event", Payload=b"{}")
            outcome = "invoked"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        _log("invoke", {"target": record["body"], "outcome": outcome})
    return {"batchItemFailures": []}


def fifo_reader(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reads a FIFO queue's batch in order (the message function's place, reading the frames queue). A body
    ``{"n": N, "fail_once": true}`` fails on its first receive; then the rest of its group in the batch is
    reported failed too, as AWS asks, unless the body also says ``"careless": true``: then only that record
    is (AWS: "your function should stop processing messages after the first failure")."""
    failed: list[str] = []
    stopped: set[str] = set()
    for record in event["Records"]:
        group = record["attributes"]["MessageGroupId"]
        body = json.loads(record["body"])
        if group in stopped:
            failed.append(record["messageId"])
        elif body.get("fail_once") and record["attributes"]["ApproximateReceiveCount"] == "1":
            _log("failed", {"group": group, "n": body["n"]})
            failed.append(record["messageId"])
            if not body.get("careless"):
                stopped.add(group)
        else:
            _log("processed", {"group": group, "n": body["n"]})
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


_stream_failures: dict[str, int] = {}


def stream_reader(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reads a DynamoDB stream's batch in order (the message function's place, reading the frames table's
    stream). Each item says ``n``; ``fail`` ``raise`` makes the invocation fail there, ``report`` names the
    record in ``batchItemFailures`` (the records after it are not processed), ``times`` times (every time
    without it); ``sleep`` seconds are slept before the record is processed."""
    records = event["Records"]
    seen = [(r["dynamodb"]["Keys"]["connectionId"]["S"], int(r["dynamodb"]["NewImage"]["n"]["N"])) for r in records]
    _log("batch", {"records": seen, "started": time.monotonic()})
    for record, (key, n) in zip(records, seen, strict=True):
        image = record["dynamodb"]["NewImage"]
        sequence = record["dynamodb"]["SequenceNumber"]
        times = int(image["times"]["N"]) if "times" in image else None
        fail = image.get("fail", {}).get("S")
        if fail and (times is None or _stream_failures.get(sequence, 0) < times):
            _stream_failures[sequence] = _stream_failures.get(sequence, 0) + 1
            _log("failed", {"key": key, "n": n})
            if fail == "raise":
                raise RuntimeError(f"record {n} of {key}")
            return {"batchItemFailures": [{"itemIdentifier": sequence}]}
        if "sleep" in image:
            time.sleep(float(image["sleep"]["N"]))
        _log("processed", {"key": key, "n": n, "at": time.monotonic()})
    return {"batchItemFailures": []}
