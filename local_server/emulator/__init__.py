"""Emulation mode: the local stand-in for API Gateway and Lambda that runs the real ``functions/*`` handlers.

Only endpoint URLs differ from AWS: the handlers get API-Gateway-, SQS- and EventBridge-shaped events,
read their configuration from the environment, store state in DynamoDB and queue webhooks in SQS (both
moto in server mode), post frames through the management API and invoke each other through the Lambda
Invoke API, both served here.
"""

from __future__ import annotations

import argparse
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
    group.add_argument("--lambda-concurrency", type=int, default=8, help="emulated Lambda containers (default 8)")
    group.add_argument(
        "--sweep-interval",
        type=float,
        default=60.0,
        help="seconds between runs of the stale-connection sweep (default 60, like its schedule; 0: never)",
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
        "--lambda-function",
        action="append",
        default=[],
        metavar="NAME=MODULE.ATTR",
        help="an extra function the Invoke API serves (e.g. a webhook Lambda target); repeatable",
    )


def run(args: argparse.Namespace, settings: Settings) -> None:
    """Run the emulator until SIGTERM/SIGINT (called by ``python -m local_server --emulate-lambda``)."""
    import asyncio

    from local_server.emulator.server import EmulatorOptions, serve

    extra = []
    for spec in args.lambda_function:
        name, sep, path = spec.partition("=")
        if not sep or not name or "." not in path:
            raise SystemExit(f"--lambda-function wants NAME=MODULE.ATTR, got {spec!r}")
        extra.append((name, path))
    options = EmulatorOptions(
        concurrency=args.lambda_concurrency,
        sweep_interval=args.sweep_interval,
        extra_functions=tuple(extra),
        idle_timeout=args.idle_timeout,
        max_connection_seconds=args.max_connection_seconds,
    )
    asyncio.run(serve(settings, options))
