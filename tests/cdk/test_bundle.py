"""The Lambda bundle built without Docker: right platform, precompiled, self-contained, nothing extra.

The bundle is really built (pip for manylinux2014_aarch64, from ``build/wheelhouse`` when ``make synth`` has
filled it, else from the package index), then its handlers are imported in an interpreter that sees only
the bundle and what the Lambda runtime provides (cdk/coldstart.py).
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_

from cdk import coldstart
from cdk.components.bundle import (
    RUNTIME_DEPENDENCIES,
    VALKEY_DEPENDENCIES,
    WHEELHOUSE_ENV,
    BundleSpec,
    asset_hash,
    build_bundle,
    pinned_requirements,
)
from tests.cdk.conftest import REPO_ROOT

SPEC = BundleSpec(lambda_.Runtime.PYTHON_3_11, lambda_.Architecture.ARM_64, pinned_requirements(RUNTIME_DEPENDENCIES))
ELF_MACHINE_AARCH64 = 183


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheelhouse = REPO_ROOT / "build" / "wheelhouse"
    out = tmp_path_factory.mktemp("bundle")
    with pytest.MonkeyPatch.context() as patch:
        if wheelhouse.is_dir() and not os.environ.get(WHEELHOUSE_ENV):
            patch.setenv(WHEELHOUSE_ENV, str(wheelhouse))
        build_bundle(out, SPEC)
    return out


def test_runtime_requirements_are_the_pins_of_pyproject() -> None:
    assert pinned_requirements(RUNTIME_DEPENDENCIES + VALKEY_DEPENDENCIES) == (
        "pydantic==2.14.4",
        "pydantic-settings==2.16.3",
        "aws-lambda-powertools==3.37.0",
        "redis==8.1.0",
    )


def _tree(root: Path) -> Path:
    for package in ("shared", "functions"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f'"""{package}"""\n')
    return root


def test_asset_hash_ignores_pycache_so_running_tests_does_not_force_a_new_upload(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = asset_hash(SPEC, root)
    (root / "shared" / "__pycache__").mkdir()
    (root / "shared" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"bytecode")
    assert asset_hash(SPEC, root) == before


def test_asset_hash_changes_with_sources_requirements_and_platform(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = asset_hash(SPEC, root)
    assert asset_hash(BundleSpec(SPEC.runtime, lambda_.Architecture.X86_64, SPEC.requirements), root) != before
    assert asset_hash(BundleSpec(SPEC.runtime, SPEC.architecture, (*SPEC.requirements, "redis==8.1.0")), root) != before
    (root / "functions" / "__init__.py").write_text('"""changed"""\n')
    assert asset_hash(SPEC, root) != before


def test_the_bundle_holds_the_sources_and_the_runtime_dependencies_only(bundle: Path) -> None:
    top = {p.name for p in bundle.iterdir() if not p.name.endswith(".dist-info")}
    assert {"shared", "functions", "pydantic", "pydantic_core", "pydantic_settings", "aws_lambda_powertools"} <= top
    # Lambda provides boto3; the local server's and the build's tooling must never ship.
    for absent in ("boto3", "botocore", "aiohttp", "prometheus_client", "redis", "aws_cdk", "moto", "pytest", "bin"):
        assert absent not in top, absent
    assert not list(bundle.glob("local_server*")) and not list(bundle.glob("tests*"))


def test_the_compiled_dependency_is_built_for_arm64(bundle: Path) -> None:
    [library] = list((bundle / "pydantic_core").glob("_pydantic_core*.so"))
    header = library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert struct.unpack("<H", header[18:20])[0] == ELF_MACHINE_AARCH64


def test_every_module_ships_unchecked_hash_bytecode_for_the_runtime_version(bundle: Path) -> None:
    sources = list((bundle / "shared").rglob("*.py")) + list((bundle / "functions").rglob("*.py"))
    assert sources
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        assert pyc.is_file(), source
        flags = struct.unpack("<I", pyc.read_bytes()[4:8])[0]
        assert flags == 0b01, f"{pyc}: hash-based (bit 0) without source check (bit 1)"


def test_the_zipped_bundle_is_small(bundle: Path, tmp_path: Path) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "bundle"), "zip", bundle))
    assert archive.stat().st_size < 10 * 1024 * 1024
    with zipfile.ZipFile(archive) as zipped:
        assert "functions/connect/handler.py" in zipped.namelist()


@pytest.fixture(scope="module")
def lambda_layout(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> coldstart.Layout:
    return coldstart.prepare(bundle, tmp_path_factory.mktemp("layout"))


@pytest.mark.parametrize("module", coldstart.HANDLER_MODULES)
def test_each_handler_imports_and_builds_its_services_from_the_bundle_alone(
    lambda_layout: coldstart.Layout, module: str
) -> None:
    """Only the stdlib, the bundle and the runtime's boto3 are importable: a missing dependency fails here."""
    output = coldstart.run_in_lambda_layout(lambda_layout, coldstart.timed(module), pyc=True)
    assert '"import"' in output


def test_bytecode_makes_the_imports_cheaper(lambda_layout: coldstart.Layout) -> None:
    """The reason for shipping .pyc: compiling on every cold start costs more than the import itself."""
    [row] = coldstart.measure_modules(lambda_layout, ("functions.message.handler",), runs=3)
    assert row["import_pyc_ms"] < row["import_source_ms"]
