"""Cold-start proxy for the deployed bundle: import time of each handler, and of its first invocation's setup.

It runs the real bundle (what ``make synth`` puts in cdk.out), not the development tree, under an
interpreter of the runtime's own version (``python3.13`` for ``python3.13``, found as the bundler finds it):
a fresh interpreter with no site-packages, the bundle first on ``sys.path`` and then only what the Lambda
Python runtime itself provides (boto3, botocore, s3transfer, urllib3, dateutil, six — this venv's copies,
compiled by that interpreter as the runtime image has them). A module the bundle forgot therefore fails here
as it would on Lambda. The bundle targets arm64 and this host may not be, so the one compiled dependency's
native library (pydantic-core's ``_pydantic_core*.so``) is swapped for this machine's build of the same
version and Python; everything else, .pyc included, is the bundle as shipped.

Times are CPU time of the interpreter (Lambda's cold start is CPU-bound, and CPU time is what a busy
build machine distorts least), best of N: the handler's import, then what its first invocation builds
before any work (settings, event loop, boto3 clients and the services), without any network call.
"with .pyc" is the bundle as shipped (compiled with ``--invalidation-mode unchecked-hash``); "without .pyc"
is the same bundle with every ``__pycache__`` removed and bytecode writing off, as Lambda runs a bundle
without bytecode (it cannot write ``/var/task``).

Run: ``.venv/bin/python -m cdk.coldstart [--runtime python3.13] [--bundle DIR] [--runs 5]`` (default: build
a fresh bundle for the stack's runtime).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import aws_lambda as lambda_

from cdk.components.bundle import (
    RUNTIME_DEPENDENCIES,
    WHEELHOUSE_ENV,
    BundleSpec,
    build_bundle,
    host_architecture,
    pinned_requirements,
    runtime_python,
)
from cdk.components.functions import ARCHITECTURE, RUNTIME

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
_PYCACHE = shutil.ignore_patterns("__pycache__")
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
    """A runnable copy of the bundle: with and without .pyc, plus the runtime's own packages, and the
    interpreter (of the runtime's version) that runs them."""

    with_pyc: Path
    without_pyc: Path
    runtime: Path
    python: Path


def prepare(bundle: Path, workdir: Path, python: Path) -> Layout:
    """Copies of ``bundle`` runnable here by ``python``, an interpreter of the bundle's runtime version."""
    with_pyc, without_pyc, runtime = workdir / "with-pyc", workdir / "without-pyc", workdir / "runtime"
    shutil.copytree(bundle, with_pyc, symlinks=True)
    _native_library_for_this_machine(with_pyc, python)
    shutil.copytree(with_pyc, without_pyc, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    runtime.mkdir()
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed here; it stands in for the Lambda runtime's copy")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        # Real folders of links to the files: the interpreter writes its .pyc here, never into the venv.
        if source.is_dir():
            shutil.copytree(source, runtime / source.name, copy_function=os.symlink, ignore=_PYCACHE)
        else:
            (runtime / source.name).symlink_to(source)
    # The runtime image's packages come with bytecode for its Python; without it the "with .pyc" figures
    # would include compiling boto3.
    subprocess.run([str(python), "-I", "-m", "compileall", "-q", "-j", "0", str(runtime)], check=True)
    return Layout(with_pyc, without_pyc, runtime, python)


def _python_version(python: Path) -> str:
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def _native_library_for_this_machine(bundle: Path, python: Path) -> None:
    """Swap the bundle's pydantic-core library (arm64) for this machine's build of the same version, taken
    from its wheel (the wheelhouse's, ``make synth`` downloads it, else the package index's)."""
    [library] = list((bundle / "pydantic_core").glob("_pydantic_core*.so"))
    if f"-{platform.machine()}-linux-gnu" in library.name:
        return
    version = next(bundle.glob("pydantic_core-*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
    spec = BundleSpec(RUNTIME, host_architecture(), (f"pydantic-core=={version}",))
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--dest", tmp, "--platform", spec.platform, "--implementation", "cp",
            "--python-version", _python_version(python), "--only-binary=:all:",
        ]  # fmt: skip
        wheelhouse = os.environ.get(WHEELHOUSE_ENV)
        if wheelhouse and Path(wheelhouse).is_dir():
            command += ["--no-index", "--find-links", wheelhouse]
        subprocess.run([*command, *spec.requirements], check=True)
        [wheel] = list(Path(tmp).glob("pydantic_core-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            [member] = [
                n for n in archive.namelist() if n.startswith("pydantic_core/_pydantic_core") and n.endswith(".so")
            ]
            library.unlink()
            (bundle / member).write_bytes(archive.read(member))


def run_in_lambda_layout(layout: Layout, code: str, *, pyc: bool, extra_env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter that sees only the stdlib, the bundle and the runtime's packages."""
    bundle = layout.with_pyc if pyc else layout.without_pyc
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **LAMBDA_ENVIRONMENT, **(extra_env or {})}
    if not pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    prelude = f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(layout.runtime)!r}]\n"
    result = subprocess.run(
        [str(layout.python), "-S", "-c", prelude + code],
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
    parser.add_argument("--runtime", default=RUNTIME.name, help=f"Lambda runtime (default: {RUNTIME.name})")
    parser.add_argument("--bundle", type=Path, help="a bundle directory for that runtime (default: build one now)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    runtime = lambda_.Runtime(args.runtime, lambda_.RuntimeFamily.PYTHON)
    spec = BundleSpec(runtime, ARCHITECTURE, pinned_requirements(RUNTIME_DEPENDENCIES))
    python = runtime_python(spec.python_version)
    if python is None:
        raise SystemExit(f"no Python {spec.python_version} interpreter here: the bundle cannot be run")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            bundle = work / "bundle"
            build_bundle(bundle, spec)
        rows = measure_modules(prepare(bundle, work / "layout", python), HANDLER_MODULES, args.runs)
    version = subprocess.run([str(python), "-I", "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"{args.runtime} bundle under Python {version}, CPU ms, best of {args.runs} fresh interpreters\n")
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
