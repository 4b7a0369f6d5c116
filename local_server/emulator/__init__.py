"""Emulation mode: the synthesized CDK stack run on this machine, with the real ``functions/*`` handlers.

The emulator reads the CloudFormation template ``cdk synth`` produces (``synth.py``, ``template.py``) and
runs what it describes: each function with its handler, environment, memory, timeout, concurrency and
async-invoke configuration; the WebSocket routes and integrations (the MOCK ``pusher:ping`` route
included); the HTTP API; the table, the queues, the event source mapping and the schedule; and each
function's IAM policies, enforced on every AWS call (``iam.py``). Only endpoint URLs differ from AWS:
DynamoDB and SQS are moto in the emulator's process (also served over HTTP), the management API and the
Lambda Invoke API are served here.
What it cannot follow is printed at start-up (docs/aws.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("emulation of API Gateway + Lambda")
    group.add_argument(
        "--emulate-lambda",
        action="store_true",
        help="run the Lambda handlers behind an emulated API Gateway, with DynamoDB and SQS in moto",
    )
    group.add_argument(
        "--lambda-concurrency",
        type=int,
        default=8,
        help="containers per function at most (default 8; a lower reserved concurrency in the template wins)",
    )
    group.add_argument(
        "--sweep-interval",
        type=float,
        default=None,
        help="seconds between scheduled runs (default: the template's schedule, 1 minute; 0: never)",
    )
    group.add_argument(
        "--replace-handler",
        action="append",
        default=[],
        metavar="HANDLER=MODULE.ATTR",
        help="run MODULE.ATTR in place of the template's HANDLER (same function: environment, role, limits)",
    )
    group.add_argument(
        "--template",
        type=Path,
        default=None,
        help="a synthesized template to run (e.g. cdk.out/Sockless.template.json); default: synthesize once "
        "per source state, cached in build/emulator/",
    )
    group.add_argument(
        "--cdk-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context for the synthesized template (as cdk synth -c KEY=VALUE); repeatable",
    )
    group.add_argument(
        "--no-iam", action="store_true", help="do not enforce the functions' IAM policies (on by default)"
    )
    group.add_argument(
        "--moto-in-process",
        action="store_true",
        help="run moto (DynamoDB, SQS) in the emulator's own process, not in a child process of its own "
        "(one process to profile; a connect storm is ~25 %% slower)",
    )
    group.add_argument(
        "--throttle-posts",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="answer this share of @connections calls with 429 TooManyRequestsException (e.g. 0.2)",
    )
    group.add_argument(
        "--cold-start", type=float, default=0.0, metavar="SECONDS", help="init time of each new container"
    )
    group.add_argument(
        "--async-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time an Event invocation waits in Lambda's queue before it runs",
    )
    group.add_argument(
        "--idle-timeout", type=float, default=600.0, help="close connections idle this long (API Gateway: 600 s)"
    )
    group.add_argument(
        "--max-connection-seconds",
        type=float,
        default=7200.0,
        help="close connections open this long (API Gateway: 7200 s)",
    )
    group.add_argument(
        "--show-emf",
        action="store_true",
        help="print the functions' CloudWatch EMF metric documents (kept off the terminal by default)",
    )
    group.add_argument(
        "--lambda-function",
        action="append",
        default=[],
        metavar="NAME=MODULE.ATTR",
        help="an extra function the Invoke API serves (e.g. a webhook Lambda target); repeatable",
    )


def run(args: argparse.Namespace, settings: Settings) -> None:
    """Run the emulator until SIGTERM/SIGINT (called by ``python -m local_server --emulate-lambda``)."""

    from local_server.emf import HideEmf
    from local_server.emulator.lambdas import Timings
    from local_server.emulator.server import EmulatorOptions, serve

    extra = []
    for spec in args.lambda_function:
        name, sep, path = spec.partition("=")
        if not sep or not name or "." not in path:
            raise SystemExit(f"--lambda-function wants NAME=MODULE.ATTR, got {spec!r}")
        extra.append((name, path))
    replaced = []
    for spec in args.replace_handler:
        old, sep, new = spec.partition("=")
        if not sep or "." not in old or "." not in new:
            raise SystemExit(f"--replace-handler wants HANDLER=MODULE.ATTR, got {spec!r}")
        replaced.append((old, new))
    context = {}
    for spec in args.cdk_context:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise SystemExit(f"--cdk-context wants KEY=VALUE, got {spec!r}")
        context[key] = value
    options = EmulatorOptions(
        concurrency=args.lambda_concurrency,
        sweep_interval=args.sweep_interval,
        extra_functions=tuple(extra),
        idle_timeout=args.idle_timeout,
        max_connection_seconds=args.max_connection_seconds,
        template=args.template,
        replaced_handlers=tuple(replaced),
        context=context,
        enforce_iam=not args.no_iam,
        throttle_posts=args.throttle_posts,
        moto_process=not args.moto_in_process,
        timings=Timings(cold_start=args.cold_start, async_delay=args.async_delay),
        hide_emf=not args.show_emf,
    )
    if options.hide_emf:
        sys.stdout = HideEmf(sys.stdout)
    from local_server.__main__ import run_loop

    # The emulator's own loop (API Gateway's WebSocket and @connections endpoints, the HTTP API) runs on uvloop
    # like the local server's: about a quarter less CPU per post of a broadcast (bench/RESULTS.md, "Fan-out in
    # the emulator"). The functions' containers keep asyncio's loop, as on Lambda: uvloop.run leaves the policy.
    run_loop(serve(settings, options), settings.event_loop)
