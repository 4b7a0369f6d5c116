"""Cold-start proxy for the deployed bundle: import time of each handler, and of its first invocation's setup.

It runs the real bundle (what ``make synth`` puts in cdk.out), not the development tree: a fresh interpreter
with no site-packages, the bundle first on ``sys.path`` and then only what the Lambda Python runtime itself
provides (boto3, botocore, s3transfer, urllib3, dateutil, six — taken from this venv). A module the bundle
forgot therefore fails here as it would on Lambda. The bundle targets arm64 and this host may not be, so the
one compiled dependency (pydantic-core) is swapped for this interpreter's build of the same version.

Times are CPU time of the interpreter (Lambda's cold start is CPU-bound, and CPU time is what a busy
build machine distorts least), best of N: the handler's import, then what its first invocation builds
before any work (settings, event loop, boto3 clients and the services), without any network call.
"with .pyc" is the bundle as shipped (compiled with ``--invalidation-mode unchecked-hash``); "without .pyc"
is the same bundle with every ``__pycache__`` removed and bytecode writing off, as Lambda runs a bundle
without bytecode (it cannot write ``/var/task``).

Run: ``.venv/bin/python -m cdk.coldstart [--bundle DIR] [--runs 5]`` (default: build a fresh bundle).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import aws_lambda as lambda_

from cdk.components.bundle import RUNTIME_DEPENDENCIES, BundleSpec, build_bundle, pinned_requirements

RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six")
HANDLER_MODULES = (
    "functions.connect.handler",
    "functions.disconnect.handler",
    "functions.welcome.handler",
    "functions.message.handler",
    "functions.fanout.handler",
    "functions.http_api.handler",
    "functions.webhooks.handler",
    "functions.sweep.handler",
)
# What a first invocation builds before doing any work: settings, the event loop, boto3 clients, services.
FIRST_INVOCATION = "import functions.runtime as r; r.container().services"
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "cold-start",
    "AWS_SECRET_ACCESS_KEY": "cold-start",
    "SOCKLESS_STORE__DRIVER": "dynamodb",
    "SOCKLESS_STORE__TABLE_NAME": "sockless-state",
    "SOCKLESS_QUEUE__DRIVER": "sqs",
    "SOCKLESS_QUEUE__QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/webhooks",
    "SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL": "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
    "SOCKLESS_APPS": json.dumps([{"id": "1", "key": "k", "secret": "s"}]),
    "POWERTOOLS_SERVICE_NAME": "sockless",
    "POWERTOOLS_METRICS_NAMESPACE": "Sockless",
}


@dataclass(frozen=True)
class Layout:
    """A runnable copy of the bundle: with and without .pyc, plus the runtime's own packages."""

    with_pyc: Path
    without_pyc: Path
    runtime: Path


def prepare(bundle: Path, workdir: Path) -> Layout:
    with_pyc, without_pyc, runtime = workdir / "with-pyc", workdir / "without-pyc", workdir / "runtime"
    shutil.copytree(bundle, with_pyc, symlinks=True)
    _swap_pydantic_core(with_pyc)
    shutil.copytree(with_pyc, without_pyc, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    runtime.mkdir()
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed here; it stands in for the Lambda runtime's copy")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return Layout(with_pyc, without_pyc, runtime)


def _swap_pydantic_core(bundle: Path) -> None:
    """Replace the bundle's (arm64) pydantic-core with this interpreter's build; the versions must match."""
    import pydantic_core

    bundled = next(bundle.glob("pydantic_core-*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
    if bundled != pydantic_core.__version__:
        raise RuntimeError(f"bundle has pydantic-core {bundled}, this venv {pydantic_core.__version__}")
    shutil.rmtree(bundle / "pydantic_core")
    shutil.copytree(Path(pydantic_core.__file__).parent, bundle / "pydantic_core")


def run_in_lambda_layout(layout: Layout, code: str, *, pyc: bool, extra_env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter that sees only the stdlib, the bundle and the runtime's packages."""
    bundle = layout.with_pyc if pyc else layout.without_pyc
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **LAMBDA_ENVIRONMENT, **(extra_env or {})}
    if not pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    prelude = f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(layout.runtime)!r}]\n"
    result = subprocess.run(
        [sys.executable, "-S", "-c", prelude + code],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{code!r} failed in the Lambda layout:\n{result.stderr[-3000:]}")
    return result.stdout


def timed(module: str) -> str:
    """Code that imports ``module``, then builds what the first invocation builds, and prints both times."""
    return (
        "import json, time\n"
        "t0 = time.process_time()\n"
        f"import {module}\n"
        "t1 = time.process_time()\n"
        f"{FIRST_INVOCATION}\n"
        "t2 = time.process_time()\n"
        "print(json.dumps({'import': (t1 - t0) * 1000, 'setup': (t2 - t1) * 1000}))\n"
    )


def measure_modules(layout: Layout, modules: tuple[str, ...], runs: int) -> list[dict[str, Any]]:
    """Best-of-``runs`` CPU time (ms) of the import and of the first-invocation setup per handler module,
    with and without .pyc."""
    rows: list[dict[str, Any]] = []
    for module in modules:
        row: dict[str, Any] = {"module": module}
        for pyc in (True, False):
            samples = [json.loads(run_in_lambda_layout(layout, timed(module), pyc=pyc)) for _ in range(runs)]
            label = "pyc" if pyc else "source"
            # The minimum: on a shared machine every other sample only adds someone else's load.
            row[f"import_{label}_ms"] = round(min(s["import"] for s in samples))
            row[f"setup_{label}_ms"] = round(min(s["setup"] for s in samples))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle directory (default: build one now)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            bundle = work / "bundle"
            spec = BundleSpec(
                lambda_.Runtime.PYTHON_3_11, lambda_.Architecture.ARM_64, pinned_requirements(RUNTIME_DEPENDENCIES)
            )
            build_bundle(bundle, spec)
        rows = measure_modules(prepare(bundle, work / "layout"), HANDLER_MODULES, args.runs)
    print(f"Python {sys.version.split()[0]}, CPU ms, best of {args.runs} fresh interpreters\n")
    print("| handler module | import, .pyc | import, no .pyc | + first-invocation setup, .pyc | setup, no .pyc |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| `{row['module']}` | {row['import_pyc_ms']} | {row['import_source_ms']} | "
            f"{row['setup_pyc_ms']} | {row['setup_source_ms']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
