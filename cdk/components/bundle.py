"""The Lambda bundle, built without Docker: ``shared`` + ``functions`` + runtime wheels, with precompiled .pyc.

Docker is not available where sockless is built and tested, and the bundle needs no compiler: every runtime
dependency ships a wheel for ``manylinux2014_aarch64``, so ``pip install --platform ... --only-binary=:all:``
into the output folder is all CDK's "local bundling" has to do. The .pyc files matter for cold start (Lambda
cannot write ``__pycache__``, so without them every cold start recompiles every imported module: ~280 ms of
imports become ~800 ms, see docs/deploy.md), and they are only used when compiled by the runtime's own minor
version — so they are compiled only when the interpreter running the synth matches the runtime.
"""

from __future__ import annotations

import compileall
import hashlib
import itertools
import os
import py_compile
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("shared", "functions")
# Runtime dependencies of the handlers, versions read from pyproject.toml so the bundle and the tests agree.
# boto3 is not bundled: every Python runtime ships it (and the 15 MB it weighs would triple the zip).
RUNTIME_DEPENDENCIES = ("pydantic", "pydantic-settings", "aws-lambda-powertools")
VALKEY_DEPENDENCIES = ("redis",)
# Bump when the bundle layout changes, so a cached asset with the old layout is never reused.
BUNDLE_FORMAT = "1"
WHEELHOUSE_ENV = "SOCKLESS_WHEELHOUSE"


@dataclass(frozen=True)
class BundleSpec:
    """What goes into the bundle: the runtime it targets and the exact requirements."""

    runtime: lambda_.Runtime
    architecture: lambda_.Architecture
    requirements: tuple[str, ...]

    @property
    def python_version(self) -> str:
        """``3.11`` for ``python3.11``."""
        return self.runtime.name.removeprefix("python")

    @property
    def platform(self) -> str:
        machine = "aarch64" if self.architecture.name == lambda_.Architecture.ARM_64.name else "x86_64"
        return f"manylinux2014_{machine}"


def pinned_requirements(names: tuple[str, ...], pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[str, ...]:
    """``name==version`` for each name, taken from the pins in pyproject.toml (any extra).

    Raises ``KeyError`` naming a dependency that pyproject.toml does not pin.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pins: dict[str, str] = {}
    extras = project.get("optional-dependencies", {}).values()
    for requirement in itertools.chain(project["dependencies"], *extras):
        name, sep, version = requirement.partition("==")
        if sep:
            pins[_normalise(name.split("[")[0])] = version.strip()
    return tuple(f"{name}=={pins[_normalise(name)]}" for name in names)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    """The Python sources that go into the bundle, sorted; never ``__pycache__`` (tests create it)."""
    files: list[Path] = []
    for package in SOURCE_PACKAGES:
        files.extend(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(files)


def asset_hash(spec: BundleSpec, root: Path = REPO_ROOT) -> str:
    """A hash of everything that changes the bundle, so an unchanged bundle is never rebuilt or re-uploaded."""
    digest = hashlib.sha256()
    for part in (BUNDLE_FORMAT, spec.runtime.name, spec.platform, *spec.requirements):
        digest.update(part.encode() + b"\0")
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_bundle(output_dir: Path, spec: BundleSpec, *, root: Path = REPO_ROOT) -> None:
    """Fill ``output_dir`` with the wheels for the target platform, the sources and their .pyc.

    Uses a local wheelhouse (``$SOCKLESS_WHEELHOUSE``, see ``make wheelhouse``) when there is one, so
    synthesis works offline; otherwise pip downloads from the index. Raises ``CalledProcessError`` when pip
    cannot resolve a wheel for the platform (a dependency without an aarch64 wheel must fail the synth).
    """
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(output_dir),
        "--platform", spec.platform, "--implementation", "cp", "--python-version", spec.python_version,
        "--only-binary=:all:", "--no-compile",
    ]  # fmt: skip
    wheelhouse = os.environ.get(WHEELHOUSE_ENV)
    if wheelhouse and Path(wheelhouse).is_dir():
        command += ["--no-index", "--find-links", wheelhouse]
    subprocess.run([*command, *spec.requirements], check=True)
    # pip's console scripts are useless in Lambda and carry the build host's interpreter path.
    shutil.rmtree(output_dir / "bin", ignore_errors=True)
    for path in source_files(root):
        target = output_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if f"{sys.version_info.major}.{sys.version_info.minor}" == spec.python_version:
        # unchecked-hash: Lambda's files all carry the same mtime, and nobody edits them in place, so the
        # interpreter should load the .pyc without even stat-ing the source. Tracebacks show /var/task paths.
        compiled = compileall.compile_dir(
            str(output_dir),
            quiet=1,
            workers=0,
            stripdir=str(output_dir),
            prependdir="/var/task",
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        if not compiled:
            raise RuntimeError(f"compileall failed in {output_dir}")
    else:
        print(
            f"warning: Python {sys.version_info.major}.{sys.version_info.minor} cannot compile .pyc for "
            f"{spec.runtime.name}; the bundle ships sources only (slower cold starts)",
            file=sys.stderr,
        )


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """CDK's local-bundling hook: builds the bundle in-process, so Docker is never needed."""

    def __init__(self, spec: BundleSpec, root: Path) -> None:
        self._spec = spec
        self._root = root

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:  # jsii passes the options struct
        build_bundle(Path(output_dir), self._spec, root=self._root)
        return True


def lambda_code(spec: BundleSpec, *, root: Path = REPO_ROOT) -> lambda_.Code:
    """The asset every function shares (one zip, one upload). Synth with bundling skipped — the unit
    tests' ``aws:cdk:bundling-stacks: []`` — never runs pip and never reads the repository tree."""
    return lambda_.Code.from_asset(
        str(root / "functions"),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=asset_hash(spec, root),
        exclude=["**/__pycache__"],
        bundling=cdk.BundlingOptions(
            image=spec.runtime.bundling_image,
            local=LocalPythonBundling(spec, root),  # type: ignore[arg-type]
        ),
    )


def download_wheelhouse(directory: Path) -> None:
    """``pip download`` every wheel either bundle needs into ``directory``, once, so later synths (which
    find it through ``$SOCKLESS_WHEELHOUSE``) work offline."""
    from cdk.components.functions import ARCHITECTURE, RUNTIME  # the one place the runtime is chosen

    spec = BundleSpec(RUNTIME, ARCHITECTURE, pinned_requirements(RUNTIME_DEPENDENCIES + VALKEY_DEPENDENCIES))
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--dest", str(directory),
            "--platform", spec.platform, "--implementation", "cp", "--python-version", spec.python_version,
            "--only-binary=:all:",
            *spec.requirements,
        ],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    # python -m cdk.components.bundle wheelhouse DIR
    if len(sys.argv) != 3 or sys.argv[1] != "wheelhouse":
        raise SystemExit("usage: python -m cdk.components.bundle wheelhouse DIR")
    download_wheelhouse(Path(sys.argv[2]))
