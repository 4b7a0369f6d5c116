"""Cold-start imports of the real bundle under two Lambda runtimes, side by side (docs/runtime.md#state).

For each runtime (default: python3.11 and the stack's) it builds the bundle as ``make synth`` does, with .pyc
compiled by an interpreter of that version, and runs it as ``cdk.coldstart`` does (fresh interpreter of that
version, only the bundle and the runtime's packages importable, CPU time). The runtimes take turns sample by
sample (module, runtime, with and without .pyc), so a load change on a shared machine hits both alike; the
figure kept is the minimum of ``--runs`` samples. Prints per-handler import CPU (ms) and the ratios.

Run: ``.venv/bin/python -m bench.coldstart_runtimes [--runs 7] [--runtimes python3.11 python3.13]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from cdk import coldstart
from cdk.components.bundle import RUNTIME_DEPENDENCIES, BundleSpec, build_bundle, pinned_requirements, runtime_python
from cdk.components.functions import ARCHITECTURE, RUNTIME


def layout_for(runtime: str, work: Path) -> coldstart.Layout:
    spec = BundleSpec(
        lambda_.Runtime(runtime, lambda_.RuntimeFamily.PYTHON), ARCHITECTURE, pinned_requirements(RUNTIME_DEPENDENCIES)
    )
    python = runtime_python(spec.python_version)
    if python is None:
        raise SystemExit(f"no Python {spec.python_version} interpreter here")
    bundle = work / runtime / "bundle"
    if not build_bundle(bundle, spec):
        raise SystemExit(f"the {runtime} bundle has no .pyc")
    return coldstart.prepare(bundle, work / runtime / "layout", python)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs=2, default=["python3.11", RUNTIME.name], metavar=("REFERENCE", "OTHER"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    reference, other = args.runtimes
    best: dict[tuple[str, str, bool], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        layouts = {runtime: layout_for(runtime, Path(tmp)) for runtime in (reference, other)}
        versions = {runtime: _version(layout.python) for runtime, layout in layouts.items()}
        for _ in range(args.runs):
            for module in coldstart.HANDLER_MODULES:
                for runtime, layout in layouts.items():
                    for pyc in (True, False):
                        sample = json.loads(coldstart.run_in_lambda_layout(layout, coldstart.timed(module), pyc=pyc))
                        key = (module, runtime, pyc)
                        best[key] = min(best.get(key, float("inf")), sample["import"])
    load = os.getloadavg()[0]
    print(
        f"{reference} (Python {versions[reference]}) against {other} (Python {versions[other]}): import CPU ms, "
        f"best of {args.runs}, runtimes alternating; load average at the end {load:.1f}\n"
    )
    columns = f"{reference} .pyc | {other} .pyc | ratio | {reference} no .pyc | {other} no .pyc | ratio"
    print(f"| handler module | {columns} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = dict.fromkeys([(r, p) for r in (reference, other) for p in (True, False)], 0.0)
    for module in coldstart.HANDLER_MODULES:
        row = {(r, p): best[(module, r, p)] for r in (reference, other) for p in (True, False)}
        for key, value in row.items():
            totals[key] += value
        print(_row(f"`{module}`", row, reference, other))
    print(_row("**sum of the eight**", totals, reference, other))
    for runtime in (reference, other):
        print(f"\n{runtime}: without .pyc / with .pyc = {totals[(runtime, False)] / totals[(runtime, True)]:.2f}")
    return 0


def _version(python: Path) -> str:
    probe = [str(python), "-I", "-c", "import sys; print(sys.version.split()[0])"]
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()


def _row(label: str, row: dict[tuple[str, bool], float], reference: str, other: str) -> str:
    pyc_ratio = row[(other, True)] / row[(reference, True)]
    src_ratio = row[(other, False)] / row[(reference, False)]
    return (
        f"| {label} | {row[(reference, True)]:.0f} | {row[(other, True)]:.0f} | {pyc_ratio:.2f} | "
        f"{row[(reference, False)]:.0f} | {row[(other, False)]:.0f} | {src_ratio:.2f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
