"""Build the events API Gateway (WebSocket and HTTP API payload v2), SQS and Lambda hand to the handlers.

The shapes follow recorded AWS events (``tests/events/``): the handlers are tested against those recordings
and run in emulation on these, so a field the handlers read and the emulator forgets shows up as a failure.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT_ID = "123456789012"


def connection_id() -> str:
    """A fresh id shaped like API Gateway's (12 random bytes, base64, 16 characters ending in ``=``)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


def _request_id() -> str:
    return base64.b64encode(secrets.token_bytes(11)).decode()


def _request_time(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


@dataclass(frozen=True, slots=True)
class WsConnection:
    """What API Gateway remembers about one WebSocket for the events it builds."""

    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    source_ip: str
    user_agent: str | None
    connected_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def request_context(self, route_key: str, event_type: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        request_id = _request_id()
        identity: dict[str, Any] = {"sourceIp": self.source_ip}
        if self.user_agent is not None:
            identity["userAgent"] = self.user_agent
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": int(now * 1000),
            "identity": identity,
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
        }


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value  # API Gateway keeps the last value in the single-value map
        multi.setdefault(key, []).append(value)
    return single, multi


def ws_connect(conn: WsConnection, headers: list[tuple[str, str]], query: list[tuple[str, str]]) -> dict[str, Any]:
    header_map, multi_headers = _multi(headers)
    event: dict[str, Any] = {
        "headers": header_map,
        "multiValueHeaders": multi_headers,
        "requestContext": conn.request_context("$connect", "CONNECT"),
        "isBase64Encoded": False,
    }
    if query:
        query_map, multi_query = _multi(query)
        event["queryStringParameters"] = query_map
        event["multiValueQueryStringParameters"] = multi_query
    return event


def ws_message(conn: WsConnection, body: str | bytes, route_key: str = "$default") -> dict[str, Any]:
    context = conn.request_context(route_key, "MESSAGE")
    context["messageId"] = _request_id()
    if isinstance(body, bytes):
        return {"requestContext": context, "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def ws_disconnect(conn: WsConnection, status_code: int, reason: str) -> dict[str, Any]:
    context = conn.request_context("$disconnect", "DISCONNECT")
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    host = conn.domain_name
    return {
        "headers": {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
        "multiValueHeaders": {"Host": [host], "x-api-key": [""], "X-Forwarded-For": [""], "x-restapi": [""]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def http_v2(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str] | list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    api_id: str,
    stage: str = "$default",
    domain_name: str,
) -> dict[str, Any]:
    """An HTTP API payload format 2.0 event, as API Gateway builds it for a ``$default`` route."""
    now = time.time()
    pairs = list(headers.items()) if isinstance(headers, Mapping) else headers
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in pairs:
        name = key.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    path = raw_path if stage == "$default" else f"/{stage}{raw_path}"
    is_text = _is_text(joined.get("content-type", ""), body)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".")[0],
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": _request_id(),
            "routeKey": "$default",
            "stage": stage,
            "time": _request_time(now),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode() if is_text else base64.b64encode(body).decode()
    return event


def _is_text(content_type: str, body: bytes) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    if not (kind.startswith("text/") or kind.endswith(("json", "xml", "x-www-form-urlencoded")) or not kind):
        return False
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of an SQS event from a ``ReceiveMessage`` result (with ``AttributeNames=["All"]``)."""
    attributes = message.get("Attributes", {})
    body = str(message["Body"])
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            # A FIFO queue's records also carry their sequence number, group and deduplication id.
            **{name: attributes[name] for name in ("SequenceNumber", "MessageGroupId") if name in attributes},
            "SenderId": attributes.get("SenderId", ACCOUNT_ID),
            **{name: attributes[name] for name in ("MessageDeduplicationId",) if name in attributes},
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", hashlib.md5(body.encode()).hexdigest()),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def scheduled(rule_arn: str, region: str) -> dict[str, Any]:
    """An EventBridge scheduled event (what a ``rate(1 minute)`` rule delivers)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }
