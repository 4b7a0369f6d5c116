"""Import time of each Lambda handler module: the cold-start proxy (issue 4 asks for < 300 ms with .pyc).

Each module is imported in a fresh interpreter with ``-X importtime`` and the cumulative time of the
module itself is read off the last line for it. "with .pyc" runs after a warm-up import has written the
bytecode cache (what a bundle compiled with ``compileall`` gives Lambda); "without .pyc" points
``PYTHONPYCACHEPREFIX`` at an empty directory and forbids writing there, so every module is compiled
from source, as in a bundle shipped without bytecode.

Run: ``.venv/bin/python -m bench.import_time [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "functions.connect.handler",
    "functions.disconnect.handler",
    "functions.welcome.handler",
    "functions.message.handler",
    "functions.fanout.handler",
    "functions.http_api.handler",
    "functions.webhooks.handler",
    "functions.sweep.handler",
)
# A warm container also builds its services on the first invocation; import what that pulls in too.
FIRST_INVOCATION = "shared.store.dynamodb,shared.webhooks.sqs,boto3"


def import_ms(module: str, *, pyc: bool, extra: str = "") -> float:
    """Cumulative import time of ``module`` (ms) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKLESS_")}
    with tempfile.TemporaryDirectory() as empty:
        if not pyc:
            env["PYTHONPYCACHEPREFIX"] = empty
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        code = f"import {module}" + (f"; import {extra}" if extra else "")
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    total = 0.0
    for line in result.stderr.splitlines():
        parts = line.split("|")
        # Top-level imports of the -c code are the names indented by exactly one space.
        top_level = len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  ")
        if top_level and parts[2].strip() in {module, *extra.split(",")}:
            total += int(parts[1]) / 1000  # cumulative microseconds
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    for module in MODULES:
        import_ms(module, pyc=True)  # write the bytecode cache
    print(f"{'module':32} {'with .pyc':>12} {'without .pyc':>14} {'+ first call deps':>18}  (median of {args.runs})")
    for module in MODULES:
        warm = statistics.median(import_ms(module, pyc=True) for _ in range(args.runs))
        cold = statistics.median(import_ms(module, pyc=False) for _ in range(max(1, args.runs // 2)))
        deps = statistics.median(import_ms(module, pyc=True, extra=FIRST_INVOCATION) for _ in range(args.runs))
        print(f"{module:32} {warm:10.0f} ms {cold:12.0f} ms {deps:16.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
