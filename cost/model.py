"""A month of a workload on the AWS stack, in billable units per line item.

A workload (concurrent connections, deliveries a day, fan-out, client events, presence joins, how long a
connection lives, hours a day online) becomes counts of operations a day; each operation costs the units of
its :data:`PROFILE` entry — what the meter counted for it in the emulator, running the real handlers
(``python -m cost --measure`` measures them again) — and the stack's standing lines (the sweep, secrets,
monitoring) are added per month. Every line is kept, whether or not a free tier would cover it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from cost.meter import ACCESS_LOG_LINE, PLATFORM_LOG_BYTES, READ_UNIT, lambda_gb_seconds

DAYS = 30
# Memory of each function in the CDK stack (cdk/stack.py FUNCTIONS; tests/cdk checks they agree).
MEMORY_MB = {
    "connect": 1024,
    "welcome": 1024,
    "disconnect": 512,
    "message": 1024,
    "fanout": 1024,
    "http_api": 1024,
    "webhooks": 512,
    "sweep": 512,
}
ALARMS = 19  # what cdk/components/monitoring.py creates with every function
# Lambda long-polls the queue of each enabled event source mapping whether or not it holds messages (20 s, SQS's
# maximum wait), billed like any request. With traffic low, Lambda "scales back the processing to five concurrent
# batches, and can optimize to as few as 2", an optimization "not available when you enable the maximum
# concurrency setting" (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html): 5 for the webhook
# queue's mapping (it has a maximum concurrency), 5 at most for the frames queue's (docs/cost.md).
IDLE_POLLERS = 5
LONG_POLL_S = 20
DASHBOARDS = 1
CUSTOM_METRICS_PER_APP = 12  # EMF metric names the engine emits per app (shared/metrics/base.py counters)
SWEEP_PERIOD_S = 60  # the EventBridge rule (cdk/stack.py SWEEP_EVERY)
SWEEP_CYCLE_S = 300  # aws.stale_after_seconds: every connection asked about once per cycle
ENTRY_BYTES = 110  # a sweep entry (pk, sk, app, sid, at, cid, ttl)
GET_CONNECTION_S = 0.015  # one GetConnection round trip from Lambda; 32 in flight
INIT_S = 0.6  # a cold start: runtime + imports with .pyc (bench/import_time.py: 350-390 ms) + clients
EMF_DOC_BYTES = 600  # one EMF document (a dozen counters, one app)
INFO_LOG_BYTES = 260  # the INFO line(s) a handler writes per invocation at INFO
# -c ordered_frames=stream (cdk/components/frames_stream.py): each frame is a PutItem of its connection's one item,
# billed in 1 KB write units by the larger of the old and new item: the frame base64-encoded plus ~100 bytes of
# attributes (connectionId, requestTimeEpoch, messageId, expires and their names). Reading the stream costs a
# Lambda consumer nothing and an idle stream nothing ("Evaluate your DynamoDB streams usage", DynamoDB developer
# guide); Lambda polls it 4 times a second at no charge, so there are no idle polls to bill.
STREAM_ITEM_BYTES = 100
SUBSCRIBE_FRAME_BYTES = 220  # pusher:subscribe of a private channel with its auth signature
PRESENCE_FRAME_BYTES = 320  # ... and a presence channel's channel_data


@dataclass(frozen=True)
class Op:
    """The units of one operation: Lambda invocations (function -> (count, milliseconds each)),
    WebSocket messages (both directions), HTTP API requests, DynamoDB units, SQS requests."""

    lambdas: dict[str, tuple[float, float]] = field(default_factory=dict)
    ws: float = 0
    http: float = 0
    rru: float = 0
    wru: float = 0
    sqs: float = 0
    # SQS FIFO requests: a frame through the ordered frames queue (cdk/components/frames.py) is a send, the
    # receive that returns it and a delete; frames invoke the function directly with -c ordered_frames=false.
    sqs_fifo: float = 0
    logged: float = 0  # API Gateway access-log lines
    # Bytes the functions wrote to CloudWatch Logs (platform lines included), when measured
    # (``python -m cost --measure``); ``None``: estimated from the stack's log level and metrics.
    log_bytes: float | None = None


# Per operation, as the meter counted them in the emulator (the store's units by item size: tests/cost
# checks the DynamoDB ones exactly). Durations are the emulator's (local calls): lower bounds of AWS's.
PROFILE: dict[str, Op] = {
    # $connect + the welcome it starts; connection_established out.
    "connect": Op({"connect": (1, 17), "welcome": (1, 17)}, ws=1, wru=3, logged=1),
    # pusher:subscribe in, subscription_succeeded out.
    # The channel joins the connection item's list in the same transaction (2): no entry item of its own.
    "subscribe": Op({"message": (1, 40)}, ws=2, rru=2.9, wru=6.1, sqs_fifo=3, logged=1),
    # A presence join adds the member item and the member counter, and member_added to the others.
    "presence_join": Op({"message": (1, 55)}, ws=2, rru=5.9, wru=8.2, sqs_fifo=3, logged=1),
    # $disconnect of a connection with one channel (the claim, the leave, the connection and its entry).
    "disconnect": Op({"disconnect": (1, 196)}, rru=3.9, wru=8.0, logged=1),
    # pusher:ping -> pong on the MOCK route: two messages, no Lambda.
    "ping": Op(ws=2, logged=1),
    # A client event: one frame in; its deliveries are counted apart. Writes: the sender's rate-limit window
    # (shared/limits/dynamodb.py), one conditional ADD while it is open; an event that finds its window over
    # pays a failed ADD and the put that opens the next (2). 1.3 is what `cost --measure` counts for events sent
    # back to back (a burst, as typing or cursors send them); events sent seconds apart cost 2 each.
    "client_event": Op({"message": (1, 20)}, ws=1, rru=2.2, wru=1.3, sqs_fifo=3, logged=1),
    # A REST publish: the HTTP API request (and its access-log line), the function, the subscriber Query;
    # deliveries apart.
    "publish": Op({"http_api": (1, 20)}, http=1, rru=1.0),
}
# Each delivery: one message out and the lean sender's share of the posting function: 0.23 GB-s per 1,000 deliveries
# at 1,024 MB (docs/aws.md#fan-out, measured under load; ~0.08 on a quiet machine).
DELIVERY_MS = 0.23
DELIVERY_MS_BOTO3 = 5.35  # the sender before the lean one (same measurement)
SUBSCRIBER_BYTES = 60  # one subscriber item in a channel's Query


@dataclass(frozen=True)
class Workload:
    connections: int = 1000
    deliveries_per_day: float = 1_000_000
    fanout: float = 10  # recipients of each publish or client event
    client_events_per_day: float = 0  # client events sent (their deliveries are part of deliveries_per_day)
    presence_joins_per_day: float = 0
    reconnect_hours: float = 2.0  # API Gateway closes every connection after 2 h
    hours_online: float = 24.0  # hours a day the connections are open
    message_bytes: int = 300  # one delivered frame
    activity_timeout: int = 540  # what the server announces and the client is configured with (s)
    apps: int = 1
    webhooks_per_day: float = 0


@dataclass(frozen=True)
class Stack:
    """How the stack is deployed: the options that change the bill. The defaults are the CDK app's defaults
    (cdk/config.py); :data:`LEAN` is ``-c monitoring=false -c metrics=false -c log_level=WARNING
    -c access_logs=false``, app secrets in SSM (``secret_parameter`` in the apps file) and the server SDKs on
    the ``RestApiUrl`` output."""

    monitoring: bool = True  # 19 alarms and a dashboard
    metrics: bool = True  # EMF custom metrics
    access_logs: bool = True  # API Gateway access logs of both APIs (-c access_logs=false)
    log_level: str = "INFO"  # application and platform log level
    secrets: str = "secretsmanager"  # or "ssm"
    pitr: bool = True
    table_gb: float = 0.001
    # Server SDKs on the CloudFront host (what the LaravelEnv output says) pay a CloudFront request per
    # publish on top of the HTTP API's; pointed at the RestApiUrl output they do not.
    rest_via_cloudfront: bool = True
    ordered_frames: bool = True  # client frames through the SQS FIFO frames queue (-c ordered_frames=false)
    # How ordered frames travel: "fifo" (-c ordered_frames=fifo, the CDK default) or "stream" (a DynamoDB stream,
    # -c ordered_frames=stream: a write unit per frame, no idle polls).
    frames_transport: str = "fifo"
    # An app of the apps file has webhooks: the worker's event source mapping is enabled and polls the webhook queue
    # (cdk/components/webhooks.py ``polled``); the example apps file has none. Implied by webhooks_per_day > 0.
    webhooks: bool = False


LEAN = Stack(
    monitoring=False,
    metrics=False,
    log_level="WARNING",
    secrets="ssm",
    rest_via_cloudfront=False,
    access_logs=False,
    frames_transport="stream",
)


def stream_frame_wru(frame_bytes: float) -> int:
    """The write units of one frame's PutItem on the frames table (base64 makes 3 bytes 4)."""
    return max(1, math.ceil((STREAM_ITEM_BYTES + 4 * math.ceil(frame_bytes / 3)) / 1024))


@dataclass(frozen=True)
class Line:
    item: str
    units: float
    unit: str
    price: str  # a key of cost.prices.PRICES

    def usd(self) -> float:
        from cost.prices import PRICES

        return self.units * PRICES[self.price].usd


def pings_per_day(deliveries_per_connection: float, online_s: float, timeout: float) -> float:
    """pusher-js pings after ``timeout`` seconds with nothing received. With deliveries arriving at random
    (Poisson, rate r), each gap between two deliveries of length g holds floor(g / timeout) pings, whose
    mean is e^(-r t) / (1 - e^(-r t)); with nothing delivered, one ping per ``timeout``."""
    if deliveries_per_connection <= 0:
        return online_s / timeout
    rate = deliveries_per_connection / online_s
    quiet = math.exp(-rate * timeout)
    return deliveries_per_connection * quiet / (1 - quiet)


def month(
    workload: Workload, stack: Stack = Stack(), profile: dict[str, Op] | None = None, delivery_ms: float = DELIVERY_MS
) -> list[Line]:
    ops = profile or PROFILE
    w = workload
    online_s = w.hours_online * 3600
    sessions = w.connections * max(1.0, w.hours_online / w.reconnect_hours) if w.connections else 0.0
    per_connection = w.deliveries_per_day / w.connections if w.connections else 0.0
    client_deliveries = w.client_events_per_day * max(0.0, w.fanout - 1)
    publishes = max(0.0, w.deliveries_per_day - client_deliveries) / w.fanout if w.fanout else 0.0
    daily = {
        "connect": sessions,
        "subscribe": max(0.0, sessions - w.presence_joins_per_day),
        "presence_join": w.presence_joins_per_day,
        "disconnect": sessions,
        "ping": w.connections * pings_per_day(per_connection, online_s, w.activity_timeout),
        "client_event": w.client_events_per_day,
        "publish": publishes,
    }
    ws = rru = wru = http = sqs = fifo = stream_wru = logged = written = op_requests = 0.0
    streamed = stack.ordered_frames and stack.frames_transport == "stream"
    frame_bytes = {"subscribe": SUBSCRIBE_FRAME_BYTES, "presence_join": PRESENCE_FRAME_BYTES}
    measured_logs = all(op.log_bytes is not None for op in ops.values())
    invocations: dict[str, float] = {}
    gb_s = 0.0
    for name, count in daily.items():
        op = ops[name]
        ws += op.ws * count
        rru += op.rru * count
        wru += op.wru * count
        http += op.http * count
        sqs += op.sqs * count
        fifo += op.sqs_fifo * count if stack.ordered_frames and not streamed else 0.0
        # A frame is 3 FIFO requests (send, receive, delete) in the profile; on the stream it is one PutItem (a
        # measured profile has those write units in ``wru`` already: the meter counts every table).
        if streamed and profile is None:
            stream_wru += op.sqs_fifo / 3 * count * stream_frame_wru(frame_bytes.get(name, w.message_bytes))
        logged += op.logged * count
        written += (op.log_bytes or 0.0) * count
        for function, (calls, ms) in op.lambdas.items():
            invocations[function] = invocations.get(function, 0.0) + calls * count
            op_requests += calls * count
            gb_s += calls * count * lambda_gb_seconds(ms / 1000, MEMORY_MB[function])
    # Deliveries: a message each, the posting function's time, the subscriber Query's size.
    ws += w.deliveries_per_day
    gb_s += w.deliveries_per_day * delivery_ms / 1000 * MEMORY_MB["http_api"] / 1024
    rru += publishes * max(0.0, math.ceil(w.fanout * SUBSCRIBER_BYTES / READ_UNIT) - 1)
    chunks = publishes * max(0.0, math.ceil(w.fanout / 1000) - 1)  # fan-out invocations above 1,000
    invocations["fanout"] = invocations.get("fanout", 0.0) + chunks
    # Webhooks: one SQS send, one receive and one delete per job, and the worker's invocation.
    sqs += 3 * w.webhooks_per_day
    # The event source mappings' idle polling: the webhook queue when an app has webhooks, the frames queue (FIFO)
    # when ordered.
    polls = IDLE_POLLERS * 86400 / LONG_POLL_S
    sqs += polls if stack.webhooks or w.webhooks_per_day > 0 else 0.0
    fifo += polls if stack.ordered_frames and not streamed else 0.0
    invocations["webhooks"] = invocations.get("webhooks", 0.0) + w.webhooks_per_day / 10
    gb_s += w.webhooks_per_day / 10 * lambda_gb_seconds(0.05, MEMORY_MB["webhooks"])

    # The sweep: one run a minute, the slots that came due (every connection once per cycle).
    runs = 86400 / SWEEP_PERIOD_S
    checks = w.connections * 86400 / SWEEP_CYCLE_S * (w.hours_online / 24)
    slots_per_run = 60 * SWEEP_PERIOD_S / SWEEP_CYCLE_S
    entries_per_slot = w.connections / 60
    rru += runs * (1 + slots_per_run * 0.5 * max(1, math.ceil(entries_per_slot * ENTRY_BYTES / READ_UNIT)))
    wru += runs  # the cursor
    invocations["sweep"] = invocations.get("sweep", 0.0) + runs
    sweep_s = runs * 0.03 + checks * GET_CONNECTION_S / 32
    gb_s += sweep_s * MEMORY_MB["sweep"] / 1024

    # Cold starts: one per function and hour it is used, plus 1 % of invocations.
    cold = sum(min(n, 24.0) + 0.01 * n for n in invocations.values() if n > 0)
    init_gb_s = cold * INIT_S * 1.0  # about 1 GB on average across the functions

    requests = sum(invocations.values())
    log_bytes = 0.0
    if measured_logs:
        # What the functions wrote in the sample; the invocations it had none of (the sweep, webhooks) at
        # the sample's average per invocation.
        log_bytes += written + (requests - op_requests) * (written / op_requests if op_requests else 0.0)
    else:
        if stack.log_level == "INFO":
            log_bytes += requests * (PLATFORM_LOG_BYTES + INFO_LOG_BYTES)
        if stack.metrics:
            log_bytes += requests * EMF_DOC_BYTES
    if stack.access_logs:
        log_bytes += (logged + http) * ACCESS_LOG_LINE
    frames_out = w.deliveries_per_day + daily["connect"] + daily["subscribe"] + daily["presence_join"] + daily["ping"]
    cloudfront_gb = frames_out * (w.message_bytes + 10) / 1e9

    lines = [
        Line("API Gateway WebSocket messages", ws * DAYS, "message", "ws_message"),
        Line("API Gateway connection-minutes", w.connections * online_s / 60 * DAYS, "minute", "ws_connection_minute"),
        Line("API Gateway HTTP API requests", http * DAYS, "request", "http_request"),
        Line("Lambda requests", requests * DAYS, "invocation", "lambda_request"),
        Line("Lambda duration (arm64)", gb_s * DAYS, "GB-s", "lambda_gb_s_arm64"),
        Line("Lambda INIT (cold starts)", init_gb_s * DAYS, "GB-s", "lambda_init_gb_s"),
        Line("DynamoDB writes", wru * DAYS, "WRU", "dynamodb_wru"),
        Line("DynamoDB reads", rru * DAYS, "RRU", "dynamodb_rru"),
        *(
            [Line("DynamoDB writes (ordered frames stream)", stream_wru * DAYS, "WRU", "dynamodb_wru")]
            if streamed
            else []
        ),
        Line("DynamoDB storage", stack.table_gb, "GB-month", "dynamodb_storage"),
        Line("SQS requests (webhook queue)", sqs * DAYS, "request", "sqs_standard_request"),
        Line("SQS FIFO requests (ordered frames)", fifo * DAYS, "request", "sqs_fifo_request"),
        Line("CloudWatch Logs ingestion", log_bytes * DAYS / 1e9, "GB", "logs_ingest"),
        Line("CloudWatch Logs storage", log_bytes * DAYS / 1e9 * 0.15, "GB-month", "logs_storage"),
        Line(
            "CloudFront requests (upgrades, REST)",
            (daily["connect"] + (http if stack.rest_via_cloudfront else 0.0)) * DAYS,
            "request",
            "cloudfront_https_request",
        ),
        Line("CloudFront data out", cloudfront_gb * DAYS, "GB", "cloudfront_data_out"),
        Line("EventBridge schedule (rule)", runs * DAYS, "invocation", "eventbridge_rule"),
    ]
    if stack.pitr:
        lines.append(Line("DynamoDB PITR", stack.table_gb, "GB-month", "dynamodb_pitr"))
    if stack.metrics:
        lines.append(
            Line("CloudWatch custom metrics", CUSTOM_METRICS_PER_APP * w.apps, "metric-month", "custom_metric")
        )
    if stack.monitoring:
        lines.append(Line("CloudWatch alarms", ALARMS, "alarm-month", "alarm"))
        lines.append(Line("CloudWatch dashboard", DASHBOARDS, "dashboard-month", "dashboard"))
    if stack.secrets == "ssm":
        lines.append(Line("SSM SecureString parameters", w.apps, "parameter-month", "ssm_standard_parameter"))
    else:
        lines.append(Line("Secrets Manager secrets", w.apps, "secret-month", "secret"))
    return lines


# The most messages Lambda's event source mapping takes from a FIFO queue in one batch (cdk/components/frames.py).
FIFO_BATCH = 10
# What SQS FIFO to a Lambda event source mapping adds between the send and the function on AWS, in ms (p50, p99):
# AWS publishes no figure; a third-party measurement ("Serverless Messaging: Latency Compared",
# bitesizedserverless.com, eu-west-1, 1,024 messages, 2022; docs/aws.md "Frames of one connection in order").
FIFO_LATENCY_MS = (28, 645)
# What the DynamoDB stream adds on AWS, in ms (p50, p99): Lambda polls a stream's shards 4 times a second ("Using
# AWS Lambda with Amazon DynamoDB", Lambda developer guide), so a frame waits for the next poll, 125 ms on average
# and up to 250 ms; an estimate from the poll rate, not a measurement (the PutItem itself is a few ms).
STREAM_LATENCY_MS = (125, 250)


@dataclass(frozen=True)
class OrderedFrames:
    """What ``-c ordered_frames`` (the default) adds to a million client frames, in $ (docs/aws.md "What it
    costs"): ``alone`` when each frame is its own batch (a quiet connection: the send, the receive that returns
    it, the delete, one invocation as before), ``full`` when batches of :data:`FIFO_BATCH` fill (a busy one:
    a send per frame, one receive and one delete per batch, one invocation instead of ten)."""

    fifo_alone: float
    fifo_full: float
    lambda_alone: float
    lambda_full: float
    # -c ordered_frames=stream: a write unit per frame (a frame up to ~680 bytes), the same invocations.
    stream_alone: float = 0.0
    stream_full: float = 0.0

    @property
    def alone(self) -> float:
        return self.fifo_alone + self.lambda_alone

    @property
    def full(self) -> float:
        return self.fifo_full + self.lambda_full


def ordered_frames() -> OrderedFrames:
    from cost.prices import PRICES

    fifo = PRICES["sqs_fifo_request"].usd * 1e6
    invocation = PRICES["lambda_request"].usd * 1e6
    write = PRICES["dynamodb_wru"].usd * 1e6
    lambda_full = -(1 - 1 / FIFO_BATCH) * invocation
    return OrderedFrames(
        fifo_alone=3 * fifo,
        fifo_full=(1 + 2 / FIFO_BATCH) * fifo,
        lambda_alone=0.0,
        lambda_full=lambda_full,
        stream_alone=write,
        stream_full=write + lambda_full,
    )


def client_events_per_million(stack: Stack) -> float:
    """A million client events on ``stack`` in $: the frame in, its invocation, store units, logs (the model's
    :data:`PROFILE`, each frame its own batch); their deliveries are priced apart."""
    idle = Workload(connections=0, deliveries_per_day=0)
    busy = replace(idle, client_events_per_day=1e6 / DAYS)
    return sum(line.usd() for line in month(busy, stack)) - sum(line.usd() for line in month(idle, stack))


def before(workload: Workload) -> list[Line]:
    """The same month on the stack as it was before issue #15's cuts (for the before/after figures): pings
    every 120 s, the default stack's logs, metrics and monitoring, the sweep touching and re-filing every live
    connection, 4 WRU connects, 8.1 WRU subscribes and 10.2 WRU disconnects, the boto3 sender, the webhook queue
    polled without webhooks."""
    profile = dict(PROFILE)
    profile["connect"] = replace(PROFILE["connect"], wru=4)
    profile["subscribe"] = replace(PROFILE["subscribe"], wru=8.1)
    profile["presence_join"] = replace(PROFILE["presence_join"], rru=3.9, wru=12.1)
    profile["disconnect"] = replace(PROFILE["disconnect"], rru=3.0, wru=10.2)
    # The webhook queue's mapping polled whether or not an app had webhooks.
    lines = month(replace(workload, activity_timeout=120), Stack(webhooks=True), profile, DELIVERY_MS_BOTO3)
    # The old sweep: every connection silent for 300 s got a GetConnection, a touch (1 WRU), and at the next
    # run a consistent BatchGet (1 RRU) and a 3-item transaction to re-file it (6 WRU): every ~6.7 minutes.
    rounds = workload.connections * 86400 / 400 * (workload.hours_online / 24) * DAYS
    extra = {"DynamoDB writes": 7 * rounds, "DynamoDB reads": 1 * rounds}
    return [replace(line, units=line.units + extra.get(line.item, 0.0)) for line in lines]
