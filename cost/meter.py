"""The meter: billable units of the deployed stack, counted the way AWS counts them.

Each ``count_*`` function turns one thing the emulator saw (a WebSocket frame, an HTTP request, an
invocation, a DynamoDB request) into the units AWS bills for it; :class:`Meter` sums them per line item.
The emulator calls it at its seams (frames in and out, invocations, moto requests); the cost report
(``python -m cost``) and the debug console read the sums. The rounding rules, each from the pricing page
named in ``cost/prices.py``:

- API Gateway WebSocket messages: 32 KB increments, both directions; connection-minutes;
- HTTP API requests: 512 KB increments;
- Lambda: one request per invocation, duration rounded up to 1 ms, times the function's memory; the INIT
  phase of a cold start billed the same way;
- DynamoDB on demand: a write is 1 unit per 1 KB of the item (the larger of before and after), 2 inside a
  transaction; a strongly consistent read is 1 unit per 4 KB (half when eventually consistent), a Query or
  a batch read sums its items before rounding; a write whose condition fails still consumes its units;
  TTL deletions are free;
- SQS: one request per API call and per 64 KB chunk of a payload, receives (empty ones too) included.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from cost.prices import PRICES

WS_UNIT = 32 * 1024
HTTP_UNIT = 512 * 1024
SQS_CHUNK = 64 * 1024
WRITE_UNIT = 1024
READ_UNIT = 4096
MONTH_S = 30 * 86400
ACCESS_LOG_LINE = 350  # bytes of one API Gateway access-log line (cdk/components/websocket.py's format)
PLATFORM_LOG_BYTES = 420  # Lambda's START, END and REPORT lines of one invocation (none at WARN)

Item = Mapping[str, Any]  # a DynamoDB item in wire format
# The current size of an item, by table and key (``None``: absent), for writes that do not carry the whole
# item (UpdateItem, DeleteItem, a failed condition). Without one, such a write counts its key and values.
SizeOf = Callable[[str, Item], int | None]


def ws_messages(size: int) -> int:
    return max(1, math.ceil(size / WS_UNIT))


def http_requests(size: int) -> int:
    return max(1, math.ceil(size / HTTP_UNIT))


def sqs_requests(payload: int) -> int:
    return max(1, math.ceil(payload / SQS_CHUNK))


def lambda_gb_seconds(duration_s: float, memory_mb: int) -> float:
    """Billed GB-s of one invocation (or one INIT): duration rounded up to the millisecond."""
    return math.ceil(duration_s * 1000 - 1e-9) / 1000 * memory_mb / 1024


# -- DynamoDB item sizes (AWS: "Item sizes and formats"): names plus values, in bytes -----------------------


def value_size(value: Mapping[str, Any]) -> int:
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":  # up to 38 significant digits: about one byte per two digits, plus one
        digits = str(raw).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(base64.b64decode(raw)) if isinstance(raw, str) else len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    return 0


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return units if consistent else units / 2


def _written(table: str, request: Mapping[str, Any], size_of: SizeOf | None) -> int:
    """Units of one single-item write: the item as written, or as it was if larger."""
    new = item_size(request["Item"]) if "Item" in request else 0
    old = size_of(table, request.get("Key") or _key_of(request["Item"])) if size_of is not None else None
    if old is None and "Item" not in request:
        # No oracle: the key plus the values the expression sets, a lower bound of the item's size.
        old = item_size(request.get("Key", {})) + sum(
            value_size(v) for v in request.get("ExpressionAttributeValues", {}).values()
        )
    return write_units(max(new, old or 0))


def _key_of(item: Item) -> Item:
    return {k: v for k, v in item.items() if k in ("pk", "sk")}


def dynamodb_units(
    operation: str, request: Mapping[str, Any], response: Mapping[str, Any] | None = None, size_of: SizeOf | None = None
) -> dict[str, float]:
    """Read and write units of one DynamoDB request. ``response`` (the items a read returned) makes reads
    exact; ``size_of`` (the table as it was) makes updates and deletes exact."""
    table = str(request.get("TableName", ""))
    response = response or {}
    consistent = bool(request.get("ConsistentRead", False))
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return {"WRU": _written(table, request, size_of)}
    if operation == "TransactWriteItems":
        total = 0
        for element in request.get("TransactItems", []):
            (_kind, body), *_ = element.items()
            total += 2 * _written(str(body.get("TableName", table)), body, size_of)
        return {"WRU": total}
    if operation == "BatchWriteItem":
        total = 0
        for name, requests in request.get("RequestItems", {}).items():
            for entry in requests:
                if "PutRequest" in entry:
                    total += _written(name, entry["PutRequest"], size_of)
                else:
                    total += _written(name, entry["DeleteRequest"], size_of)
        return {"WRU": total}
    if operation == "GetItem":
        found = response.get("Item")
        return {"RRU": read_units(item_size(found) if found else 0, consistent)}
    if operation in ("Query", "Scan"):
        size = sum(item_size(i) for i in response.get("Items", []))
        return {"RRU": read_units(size, consistent)}
    if operation == "BatchGetItem":
        read = 0.0
        for name, items in response.get("Responses", {}).items():
            strong = bool(request.get("RequestItems", {}).get(name, {}).get("ConsistentRead", False))
            read += sum(read_units(item_size(i), strong) for i in items)
        return {"RRU": read}
    return {}


class Meter:
    """Billable units counted since it started (thread-safe: the emulator's handlers run in threads).

    ``units`` holds the billable units by price key (cost/prices.py); ``counts`` what happened without
    being billed by itself: frames in and out, @connections calls and their 410s, invocations and billed
    milliseconds per function, log bytes, access-log lines. The emulator (local_server/emulator) feeds one
    Meter from all of its seams; ``python -m cost --measure`` and the debug console read it."""

    def __init__(self, memory_mb: Mapping[str, int] | None = None) -> None:
        self.memory_mb = dict(memory_mb or {})
        # Whether the APIs' stages write access logs (-c access_logs=false: no); the lines are counted either way.
        self.access_logs = True
        self.units: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def add(self, **units: float) -> None:
        with self._lock:
            self.units.update(units)

    def count(self, **events: float) -> None:
        with self._lock:
            self.counts.update(events)

    # -- API Gateway and CloudFront ------------------------------------------------------------------------

    def connection_opened(self) -> None:
        """An upgrade $connect accepted: a CloudFront request (the upgrade) and an access-log line."""
        self.count(connects=1)
        self.add(cloudfront_https_request=1)
        self.access_log()

    def ws_in(self, size: int) -> None:
        """A client frame: billed messages, and the route's access-log line (the MOCK route's too)."""
        messages = ws_messages(size)
        self.count(ws_in=messages)
        self.add(ws_message=messages)
        self.access_log()

    def ws_out(self, size: int) -> None:
        """A message API Gateway sent a client: a post, a two-way route's reply, an error frame."""
        messages = ws_messages(size)
        self.count(ws_out=messages)
        self.add(ws_message=messages)

    def connection_closed(self, seconds: float, disconnect_route: bool = True) -> None:
        self.add(ws_connection_minute=seconds / 60)
        if disconnect_route:
            self.access_log()

    def http_request(self, size: int) -> None:
        """A REST request: the HTTP API's units, CloudFront's request (the SDKs on the CloudFront host) and
        the HTTP API's access-log line."""
        self.add(http_request=http_requests(size), cloudfront_https_request=1)
        self.access_log()

    def access_log(self, lines: int = 1) -> None:
        self.count(access_log_lines=lines)
        if self.access_logs:
            self.add(logs_ingest=lines * ACCESS_LOG_LINE / 1e9)

    # -- Lambda and CloudWatch Logs ------------------------------------------------------------------------

    def invocation(self, function: str, duration_s: float, memory_mb: int | None = None, init_s: float = 0.0) -> None:
        memory = memory_mb or self.memory_mb.get(function, 1024)
        gb_s = lambda_gb_seconds(duration_s, memory)
        init = lambda_gb_seconds(init_s, memory) if init_s else 0.0
        billed_ms = math.ceil(duration_s * 1000 - 1e-9)
        self.count(**{f"invocations:{function}": 1, f"billed_ms:{function}": billed_ms, "cold_starts": init_s > 0})
        self.add(lambda_request=1, lambda_gb_s_arm64=gb_s, lambda_init_gb_s=init)

    def log_bytes(self, size: int) -> None:
        """Bytes a function wrote to its log group (its stdout, and Lambda's platform lines)."""
        self.count(log_bytes=size)
        self.add(logs_ingest=size / 1e9)

    # -- DynamoDB and SQS ----------------------------------------------------------------------------------

    def dynamodb(
        self,
        operation: str,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None = None,
        size_of: SizeOf | None = None,
    ) -> None:
        units = dynamodb_units(operation, request, response, size_of)
        self.add(dynamodb_wru=units.get("WRU", 0), dynamodb_rru=units.get("RRU", 0))

    def sqs(self, operation: str, request: Mapping[str, Any], response: Mapping[str, Any] | None = None) -> None:
        """One SQS request: FIFO queues (``.fifo``) at their own price; a receive that returned nothing is
        counted apart too (``sqs_empty_receives``: the pollers' standing cost, not an operation's)."""
        price = "sqs_fifo_request" if str(request.get("QueueUrl", "")).endswith(".fifo") else "sqs_standard_request"
        if operation in ("SendMessage", "SendMessageBatch"):
            bodies = [request.get("MessageBody", "")] + [e.get("MessageBody", "") for e in request.get("Entries", [])]
            payload = sum(len(str(b).encode()) for b in bodies)
            self.add(**{price: sqs_requests(payload)})
        else:
            self.add(**{price: 1})
        if operation == "ReceiveMessage" and response is not None and not response.get("Messages"):
            self.count(sqs_empty_receives=1, **{f"{price}_empty_receives": 1})
        self.count(**{f"sqs:{operation}": 1})

    # -- reading -------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.units)

    def counted(self) -> dict[str, float]:
        with self._lock:
            return dict(self.counts)

    def usd(self) -> dict[str, float]:
        return {name: PRICES[name].usd * units for name, units in self.snapshot().items() if name in PRICES}

    def per_month(self) -> dict[str, float]:
        """What the traffic since the meter started costs a month if it went on at the same rate (30 days):
        usage lines only, by price key."""
        elapsed = max(time.monotonic() - self.started, 1.0)
        return {name: usd * MONTH_S / elapsed for name, usd in self.usd().items()}


def request_json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
