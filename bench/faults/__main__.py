"""``python -m bench.faults {sigterm,sigkill,cycles,webhook-down,fuzz,redis-restart} [options]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.faults import churn, fuzzing, lifecycle, webhooks
from bench.faults.common import load


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    scenarios = parser.add_subparsers(dest="scenario", required=True)

    p = scenarios.add_parser("sigterm", help="SIGTERM under N clients: 4200 for all, webhooks flushed, exit 0")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--store", choices=["memory", "redis"], default="memory")

    p = scenarios.add_parser("sigkill", help="a SIGKILLed node's members removed once within the lease")
    p.add_argument("--members", type=int, default=25)
    p.add_argument("--lease", type=float, default=10.0)

    p = scenarios.add_parser("cycles", help="connect/subscribe/close cycles: RSS and open files per 1,000")
    p.add_argument("--cycles", type=int, default=30_000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--store", choices=["memory", "redis"], default="redis")
    p.add_argument("--rate", type=float, default=200.0, help="cycles started per second")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between the two halves")

    p = scenarios.add_parser("webhook-down", help="a webhook receiver down for a while: every event once")
    p.add_argument("--down", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=2.0, help="channels occupied and vacated per second")
    p.add_argument("--max-backoff", type=float, default=None, help="webhooks.retry_max_backoff_seconds (60)")
    p.add_argument("--delay", type=float, default=None, help="webhooks.delay_seconds (3)")

    p = scenarios.add_parser("fuzz", help="random frames and REST calls against two nodes: no 5xx")
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--sockets", type=int, default=6)
    p.add_argument("--rest", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)

    p = scenarios.add_parser("redis-restart", help="Redis killed and restarted empty: rosters exact again")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--down", type=float, default=5.0)

    args = vars(parser.parse_args())
    name = args.pop("scenario")
    runs: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "sigterm": lifecycle.sigterm,
        "sigkill": lifecycle.sigkill,
        "cycles": churn.cycles,
        "webhook-down": webhooks.receiver_down,
        "fuzz": fuzzing.fuzz,
        "redis-restart": lifecycle.redis_restart,
    }
    started = time.monotonic()
    result = asyncio.run(runs[name](**args))
    print(
        json.dumps({"scenario": name, **result, "seconds": round(time.monotonic() - started, 1), "load_after": load()})
    )


if __name__ == "__main__":
    main()
