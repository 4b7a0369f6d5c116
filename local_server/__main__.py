"""``python -m local_server [--config FILE] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from pydantic import ValidationError

from local_server.banner import busy_port
from local_server.emulator import add_arguments as add_emulator_arguments
from shared.settings import ConfigFileError, Settings, load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_server", description="sockless local server")
    parser.add_argument("--config", help="JSON config file (SOCKLESS_* environment variables override it)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 6001)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (default 9601)")
    add_emulator_arguments(parser)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    # SOCKLESS_CONFIG names the file when --config is not given (as in Lambda and containers).
    config = args.config or os.environ.get("SOCKLESS_CONFIG") or None
    return load_settings(config, host=args.host, port=args.port, metrics_port=args.metrics_port)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(root)"
        lines.append(f"  {field}: {error['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigFileError as exc:
        print(f"sockless: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"sockless: {_describe(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format='{"time":"%(asctime)s","level":"%(levelname)s","msg":"%(message)s"}'
    )
    how = "change it with --port P or SOCKLESS_PORT=P (SOCKLESS_PORT=6002 make serve)"
    ports: list[tuple[int | None, str]] = [(settings.port, how)]
    if not args.emulate_lambda:  # the emulator has no Prometheus port: its functions write CloudWatch EMF
        ports.append((settings.metrics_port, "change it with --metrics-port P or SOCKLESS_METRICS_PORT=P"))
    busy = busy_port(settings.host, ports)
    if busy is not None:
        print(f"sockless: {busy}", file=sys.stderr)
        return 1
    try:
        if args.emulate_lambda:
            from local_server.emulator import run

            run(args, settings)
            return 0
        from local_server.runtime import serve

        run_loop(serve(settings), settings.event_loop)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Taken between the check above and the bind: still one line, not a traceback.
        print(f"sockless: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def run_loop(main: Coroutine[Any, Any, None], choice: str) -> None:
    """Run the server on uvloop when chosen (or, with "auto", installed), else on asyncio's own loop."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


if __name__ == "__main__":
    sys.exit(main())
