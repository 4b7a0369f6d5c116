"""``python -m cost`` (``make cost ARGS='...'``): what a workload costs a month on the AWS stack, line by line,
beside the Pusher plan that fits and the self-hosted local server. docs/cost.md explains every line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace

from cost.model import (
    FIFO_LATENCY_MS,
    LEAN,
    STREAM_LATENCY_MS,
    Op,
    Stack,
    Workload,
    before,
    client_events_per_million,
    month,
    ordered_frames,
)
from cost.prices import PRICES_READ_ON, PUSHER_PLANS
from cost.selfhost import self_hosted


def pusher_plan(connections: int, messages_per_day: float) -> tuple[str, float | None]:
    for name, usd, max_connections, max_messages in PUSHER_PLANS:
        if connections <= max_connections and messages_per_day <= max_messages:
            return name, usd
    return "custom (above Premium)", None


def report(workload: Workload, stack: Stack, profile: dict[str, Op] | None = None) -> dict[str, object]:
    """The month of ``workload`` on ``stack``, from ``profile`` (measured by ``cost.measure``) or the recorded
    per-operation units of ``cost.model.PROFILE``."""
    lines = month(workload, stack, profile)
    total = sum(line.usd() for line in lines)
    publishes = max(0.0, workload.deliveries_per_day - workload.client_events_per_day * max(0.0, workload.fanout - 1))
    publishes /= workload.fanout or 1
    plan, plan_usd = pusher_plan(
        workload.connections, workload.deliveries_per_day + publishes + workload.client_events_per_day
    )
    cloudfront = next(line for line in lines if line.item == "CloudFront data out")
    hosted = self_hosted(workload.connections, cloudfront.units)
    old = sum(line.usd() for line in before(workload))
    added = ordered_frames()
    return {
        "total_usd_per_month": round(total, 2),
        "lines": [
            {"item": line.item, "units": round(line.units, 3), "unit": line.unit, "usd": round(line.usd(), 4)}
            for line in lines
        ],
        "pusher": {"plan": plan, "usd": plan_usd},
        "self_hosted_usd": round(hosted.usd, 2),
        "self_hosted_instance": hosted.instance,
        "before_cuts_usd": round(old, 2),
        # What keeping each connection's frames in order costs (issue #20, docs/aws.md "Frames of one connection
        # in order"), whichever way this stack is deployed.
        "ordered_frames": {
            "added_usd_per_million_client_frames": {
                "alone": round(added.alone, 2),
                "full_batches": round(added.full, 2),
                "stream_alone": round(added.stream_alone, 2),
                "stream_full_batches": round(added.stream_full, 2),
            },
            "client_event_usd_per_million": {
                "unordered": round(client_events_per_million(replace(stack, ordered_frames=False)), 2),
                "ordered": round(
                    client_events_per_million(replace(stack, ordered_frames=True, frames_transport="fifo")), 2
                ),
                "stream": round(
                    client_events_per_million(replace(stack, ordered_frames=True, frames_transport="stream")), 2
                ),
            },
            "added_latency_ms_on_aws": {"p50": FIFO_LATENCY_MS[0], "p99": FIFO_LATENCY_MS[1]},
            "stream_added_latency_ms_on_aws": {"p50": STREAM_LATENCY_MS[0], "p99": STREAM_LATENCY_MS[1]},
        },
        "stack": asdict(stack),
        "prices_read_on": PRICES_READ_ON,
        "measured": profile is not None,
    }


def verdict(result: dict[str, object]) -> str:
    total = float(result["total_usd_per_month"])  # type: ignore[arg-type]
    pusher = result["pusher"]["usd"]  # type: ignore[index]
    hosted = float(result["self_hosted_usd"])  # type: ignore[arg-type]
    cheaper = [
        f"Pusher {result['pusher']['plan']} (${pusher:,.0f})"  # type: ignore[index]
        for _ in [0]
        if pusher is not None and pusher < total
    ]
    if hosted < total:
        cheaper.append(f"the local server on a {result['self_hosted_instance']} (${hosted:,.2f})")
    if not cheaper:
        return "serverless on AWS is the cheapest option here."
    return "serverless does not win here: cheaper is " + " and ".join(cheaper) + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cost", description=__doc__)
    w = parser.add_argument_group("workload")
    w.add_argument("--connections", type=int, default=1000, help="concurrent connections while online")
    w.add_argument("--deliveries-per-day", type=float, default=1_000_000, help="frames delivered to clients")
    w.add_argument("--fanout", type=float, default=10, help="recipients of each publish or client event")
    w.add_argument("--client-events-per-day", type=float, default=0)
    w.add_argument("--presence-joins-per-day", type=float, default=0)
    w.add_argument("--reconnect-hours", type=float, default=2.0, help="connection lifetime (API Gateway: <= 2)")
    w.add_argument("--hours-online", type=float, default=24.0, help="hours a day the connections are open")
    w.add_argument("--message-bytes", type=int, default=300)
    w.add_argument("--activity-timeout", type=int, default=540, help="seconds; the stack announces 540")
    w.add_argument("--apps", type=int, default=1)
    w.add_argument("--webhooks-per-day", type=float, default=0)
    s = parser.add_argument_group("stack options (default: the CDK app's defaults)")
    s.add_argument("--lean", action="store_true", help="all of the cuts below (docs/cost.md)")
    s.add_argument("--no-monitoring", action="store_true", help="-c monitoring=false: no alarms, no dashboard")
    s.add_argument("--no-metrics", action="store_true", help="-c metrics=false: no EMF custom metrics")
    s.add_argument("--log-level", choices=("INFO", "WARNING"), help="-c log_level=...")
    s.add_argument("--secrets", choices=("secretsmanager", "ssm"), help="where the app secrets live")
    s.add_argument("--rest-direct", action="store_true", help="server SDKs on the RestApiUrl output, not CloudFront")
    s.add_argument("--no-access-logs", action="store_true", help="-c access_logs=false: no API Gateway access logs")
    s.add_argument("--no-pitr", action="store_true")
    s.add_argument("--unordered-frames", action="store_true", help="-c ordered_frames=false: no SQS FIFO per frame")
    s.add_argument(
        "--frames",
        choices=("fifo", "stream"),
        help="-c ordered_frames=fifo|stream (default: fifo; --lean: the cheaper for the workload)",
    )
    s.add_argument(
        "--webhooks",
        action="store_true",
        help="an app has webhooks: the webhook queue is polled (implied by --webhooks-per-day)",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="count the per-operation units again: run a sample of the workload through the emulator (~30-60 s)",
    )
    parser.add_argument("--sample", type=int, default=8, help="connections in the --measure sample")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    workload = Workload(
        connections=args.connections,
        deliveries_per_day=args.deliveries_per_day,
        fanout=args.fanout,
        client_events_per_day=args.client_events_per_day,
        presence_joins_per_day=args.presence_joins_per_day,
        reconnect_hours=args.reconnect_hours,
        hours_online=args.hours_online,
        message_bytes=args.message_bytes,
        activity_timeout=args.activity_timeout,
        apps=args.apps,
        webhooks_per_day=args.webhooks_per_day,
    )
    base = LEAN if args.lean else Stack()
    stack = replace(
        base,
        monitoring=base.monitoring and not args.no_monitoring,
        metrics=base.metrics and not args.no_metrics,
        log_level=args.log_level or base.log_level,
        secrets=args.secrets or base.secrets,
        rest_via_cloudfront=base.rest_via_cloudfront and not args.rest_direct,
        pitr=base.pitr and not args.no_pitr,
        access_logs=base.access_logs and not args.no_access_logs,
        ordered_frames=base.ordered_frames and not args.unordered_frames,
        frames_transport=args.frames or base.frames_transport,
        webhooks=args.webhooks or args.webhooks_per_day > 0,
    )
    if args.lean and args.frames is None and stack.ordered_frames:
        # The lean stack orders frames whichever way is cheaper for this workload (the stream, unless busy
        # connections fill FIFO batches).
        stack = min(
            (replace(stack, frames_transport=t) for t in ("stream", "fifo")),
            key=lambda candidate: sum(line.usd() for line in month(workload, candidate)),
        )
    profile = None
    if args.measure:
        from cost.measure import measure

        print(f"measuring: a sample of {args.sample} connections through the emulator...", file=sys.stderr)
        profile = measure(stack, args.sample)
    result = report(workload, stack, profile)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    source = "measured in the emulator just now" if profile is not None else "recorded in cost/model.py"
    print(f"sockless on AWS, us-east-1 list prices read {PRICES_READ_ON}, no free tier; per month:")
    print(f"  per-operation units: {source}")
    print(f"  workload: {json.dumps(asdict(workload))}")
    print(f"  stack: {json.dumps(asdict(stack))}")
    for line in result["lines"]:  # type: ignore[attr-defined]
        print(f"  {line['item']:40} {line['units']:>16,.1f} {line['unit']:<16} ${line['usd']:>10,.2f}")
    print(f"  {'total':40} {'':>16} {'':<16} ${result['total_usd_per_month']:>10,.2f}")
    pusher = result["pusher"]
    price = "n/a" if pusher["usd"] is None else f"${pusher['usd']:,.0f}"  # type: ignore[index]
    print(f"Pusher plan that fits: {pusher['plan']} ({price})")  # type: ignore[index]
    print(
        f"self-hosted (local server + Redis on a {result['self_hosted_instance']}): ${result['self_hosted_usd']:,.2f}"
    )
    print(f"the same month before issue #15's cuts: ${result['before_cuts_usd']:,.2f}")
    order: dict[str, dict[str, float]] = result["ordered_frames"]  # type: ignore[assignment]
    added, events = order["added_usd_per_million_client_frames"], order["client_event_usd_per_million"]
    latency = order["added_latency_ms_on_aws"]
    stream_latency = order["stream_added_latency_ms_on_aws"]
    transport = stack.frames_transport if stack.ordered_frames else "off"
    print(
        f"ordered frames (-c ordered_frames, {transport} here): SQS FIFO "
        f"+${added['alone']:.2f} per million client frames, each its own batch "
        f"(+${added['full_batches']:.2f} with full batches of 10), plus its idle polls; a million client events "
        f"without their deliveries ${events['unordered']:.2f} -> ${events['ordered']:.2f}; on AWS "
        f"+{latency['p50']:.0f} ms p50, +{latency['p99']:.0f} ms p99 per subscribe and client event. DynamoDB "
        f"stream +${added['stream_alone']:.2f} per million (+${added['stream_full_batches']:.2f} with full "
        f"batches), no idle cost; ${events['stream']:.2f} a million client events; on AWS "
        f"~+{stream_latency['p50']:.0f} ms average, up to +{stream_latency['p99']:.0f} ms (4 polls a second). "
        "docs/aws.md; emulated: bench/RESULTS.md"
    )
    print(verdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
