"""The Lambda bundle, built without Docker: ``shared`` + ``functions`` + runtime wheels, with precompiled .pyc.

Docker is not available where sockless is built and tested, and the bundle needs no compiler: every runtime
dependency ships a wheel for ``manylinux2014_aarch64``, so ``pip install --platform ... --only-binary=:all:``
into the output folder is all CDK's "local bundling" has to do. The .pyc files matter for cold start (Lambda
cannot write ``__pycache__``, so without them every cold start recompiles every imported module, see
docs/runtime.md), and an interpreter only uses a .pyc written by its own minor version: they are compiled by
an interpreter of the runtime's version (``runtime_python``), which need not be the one running the synth.
Without one, the bundle ships sources only, with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import platform
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
# Where an interpreter of the runtime's version is looked for, after ``pythonX.Y`` on PATH.
PYENV_VERSIONS = Path.home() / ".pyenv" / "versions"
# What a cold start costs without .pyc, for the warning (docs/runtime.md#state has the measurements).
SOURCES_ONLY_COST = "each handler's imports take ~2.6 times the CPU: +380-400 ms per cold start, measured on x86"


@dataclass(frozen=True)
class BundleSpec:
    """What goes into the bundle: the runtime it targets and the exact requirements."""

    runtime: lambda_.Runtime
    architecture: lambda_.Architecture
    requirements: tuple[str, ...]

    @property
    def python_version(self) -> str:
        """``3.13`` for ``python3.13``."""
        return self.runtime.name.removeprefix("python")

    @property
    def platform(self) -> str:
        machine = "aarch64" if self.architecture.name == lambda_.Architecture.ARM_64.name else "x86_64"
        return f"manylinux2014_{machine}"


def host_architecture() -> lambda_.Architecture:
    """The Lambda architecture this machine can run natively (the cold-start measurement needs it)."""
    return lambda_.Architecture.ARM_64 if platform.machine() in ("aarch64", "arm64") else lambda_.Architecture.X86_64


@functools.cache
def runtime_python(version: str) -> Path | None:
    """An interpreter of ``version`` (``3.13``) on this machine, or None: this one when it matches, else
    ``python3.13`` on PATH, else pyenv's newest ``3.13.*``. Each candidate is run once to check its version
    (pyenv's shims are on PATH for every version but fail for those not selected)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    candidates: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    pyenv = sorted(
        PYENV_VERSIONS.glob(f"{version}.*/bin/python{version}"),
        key=lambda p: [int(n) if n.isdigit() else -1 for n in p.parts[-3].split(".")],
        reverse=True,
    )
    candidates.extend(pyenv)
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def compile_bytecode(directory: Path, version: str, python: Path | None) -> bool:
    """Compile every ``.py`` under ``directory`` with ``python`` (an interpreter of ``version``), as Lambda
    will load it from ``/var/task``; without one, warn that the bundle ships sources only and return False.

    unchecked-hash: Lambda's files all carry the same mtime and nobody edits them in place, so the runtime
    loads each .pyc without even stat-ing its source. Optimization level 0: Lambda runs without ``-O``.
    ``-I`` keeps the caller's ``PYTHONPYCACHEPREFIX`` (which would move the .pyc out of the bundle) and
    ``PYTHONOPTIMIZE`` out. Tracebacks show /var/task paths. Raises ``CalledProcessError`` when a file does
    not compile.
    """
    if python is None:
        print(
            f"warning: no Python {version} interpreter found (python{version} on PATH, or "
            f"{PYENV_VERSIONS}/{version}.*): the Lambda bundle ships sources without .pyc, so every cold start "
            f"compiles each module it imports ({SOURCES_ONLY_COST}; docs/runtime.md#state). "
            f"Install Python {version} and synthesize again.",
            file=sys.stderr,
        )
        return False
    subprocess.run(
        [
            str(python), "-I", "-m", "compileall", "-q", "-j", "0", "-o", "0",
            "--invalidation-mode", "unchecked-hash",
            "-s", str(directory), "-p", "/var/task",
            str(directory),
        ],
        check=True,
    )  # fmt: skip
    return True


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


def asset_hash(spec: BundleSpec, root: Path = REPO_ROOT, *, compiled: bool = True) -> str:
    """A hash of everything that changes the bundle, so an unchanged bundle is never rebuilt or re-uploaded.
    ``compiled``: whether it carries .pyc (a sources-only bundle must not be reused once an interpreter of
    the runtime's version is there)."""
    digest = hashlib.sha256()
    bytecode = "pyc" if compiled else "sources-only"
    for part in (BUNDLE_FORMAT, spec.runtime.name, spec.platform, bytecode, *spec.requirements):
        digest.update(part.encode() + b"\0")
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_bundle(output_dir: Path, spec: BundleSpec, *, root: Path = REPO_ROOT) -> bool:
    """Fill ``output_dir`` with the wheels for the target platform, the sources and their .pyc (compiled by
    ``runtime_python``); True when the .pyc are there, False (with a warning) when the bundle has sources only.

    Uses a local wheelhouse (``$SOCKLESS_WHEELHOUSE``, see ``make synth``) when there is one, so
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
    return compile_bytecode(output_dir, spec.python_version, runtime_python(spec.python_version))


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
        asset_hash=asset_hash(spec, root, compiled=runtime_python(spec.python_version) is not None),
        exclude=["**/__pycache__"],
        bundling=cdk.BundlingOptions(
            image=spec.runtime.bundling_image,
            local=LocalPythonBundling(spec, root),  # type: ignore[arg-type]
        ),
    )


def download_wheelhouse(directory: Path) -> None:
    """``pip download`` every wheel either bundle needs into ``directory``, once, so later synths (which
    find it through ``$SOCKLESS_WHEELHOUSE``) work offline: for the runtime's Python on Lambda's
    architecture, and on this machine's too, which tests/cdk/test_bundle.py and ``cdk.coldstart`` need to run
    the bundle here."""
    from cdk.components.functions import ARCHITECTURE, RUNTIME  # the one place the runtime is chosen

    requirements = pinned_requirements(RUNTIME_DEPENDENCIES + VALKEY_DEPENDENCIES)
    directory.mkdir(parents=True, exist_ok=True)
    architectures = {a.name: a for a in (ARCHITECTURE, host_architecture())}
    for architecture in architectures.values():
        spec = BundleSpec(RUNTIME, architecture, requirements)
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
