"""The Lambda bundle built without Docker: right platform, bytecode of the runtime's Python, self-contained.

The bundle is really built (the ``bundle`` fixture of tests/cdk/conftest.py: pip for Lambda's platform, from
``build/wheelhouse`` when ``make synth`` has filled it, else from the package index), then its handlers
are imported by an interpreter of the runtime's own version that sees only the bundle and what the Lambda
runtime provides (cdk/coldstart.py). Tests that need that interpreter skip, saying so, on a machine without
one; there the bundle ships sources only, which ``test_without_an_interpreter_...`` covers.
"""

from __future__ import annotations

import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_

from cdk import coldstart
from cdk.components.bundle import (
    RUNTIME_DEPENDENCIES,
    VALKEY_DEPENDENCIES,
    BundleSpec,
    asset_hash,
    compile_bytecode,
    pinned_requirements,
    runtime_python,
)
from cdk.components.functions import RUNTIME
from tests.cdk.conftest import BUNDLE_SPEC, local_wheelhouse

SPEC = BUNDLE_SPEC
ELF_MACHINE_AARCH64 = 183
PYTHON = runtime_python(SPEC.python_version)
needs_runtime_python = pytest.mark.skipif(
    PYTHON is None, reason=f"no Python {SPEC.python_version} here: the bundle carries no .pyc and cannot be run"
)


def _runtime_says(code: str) -> str:
    assert PYTHON is not None
    return subprocess.run([str(PYTHON), "-I", "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_bundle_targets_the_stacks_runtime() -> None:
    assert SPEC.runtime.name == RUNTIME.name == "python3.13"
    assert SPEC.python_version == "3.13"


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
    (root / "shared" / "__pycache__" / "__init__.cpython-313.pyc").write_bytes(b"bytecode")
    assert asset_hash(SPEC, root) == before


def test_asset_hash_changes_with_sources_requirements_platform_runtime_and_bytecode(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = asset_hash(SPEC, root)
    assert asset_hash(BundleSpec(SPEC.runtime, lambda_.Architecture.X86_64, SPEC.requirements), root) != before
    assert asset_hash(BundleSpec(SPEC.runtime, SPEC.architecture, (*SPEC.requirements, "redis==8.1.0")), root) != before
    assert asset_hash(BundleSpec(lambda_.Runtime.PYTHON_3_12, SPEC.architecture, SPEC.requirements), root) != before
    # A bundle synthesized without an interpreter of the runtime's version is not the one with .pyc.
    assert asset_hash(SPEC, root, compiled=False) != before
    (root / "functions" / "__init__.py").write_text('"""changed"""\n')
    assert asset_hash(SPEC, root) != before


def test_the_bundle_holds_the_sources_and_the_runtime_dependencies_only(bundle: Path) -> None:
    top = {p.name for p in bundle.iterdir() if not p.name.endswith(".dist-info")}
    assert {"shared", "functions", "pydantic", "pydantic_core", "pydantic_settings", "aws_lambda_powertools"} <= top
    # Lambda provides boto3; the local server's and the build's tooling (CDK, linters) must never ship.
    absent = ("boto3", "botocore", "aiohttp", "prometheus_client", "redis", "aws_cdk", "jsii", "constructs")
    for name in (*absent, "cdk_nag", "moto", "pytest", "ruff", "mypy", "cfnlint", "bin"):
        assert name not in top, name
    assert not list(bundle.glob("local_server*")) and not list(bundle.glob("tests*"))
    assert not list(bundle.glob("cdk")) and not list(bundle.glob("cost*"))


def test_the_compiled_dependency_is_built_for_arm64_and_the_runtimes_python(bundle: Path) -> None:
    [library] = list((bundle / "pydantic_core").glob("_pydantic_core*.so"))
    assert library.name == "_pydantic_core.cpython-313-aarch64-linux-gnu.so"
    header = library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert struct.unpack("<H", header[18:20])[0] == ELF_MACHINE_AARCH64


@needs_runtime_python
def test_every_module_ships_unchecked_hash_bytecode_of_the_runtimes_python(bundle: Path) -> None:
    """3.13's magic number in every .pyc (a .pyc of another version is ignored by the runtime, which then
    compiles the source on every cold start), hash-based without source check, and no .pyc of another tag."""
    magic = bytes.fromhex(_runtime_says("import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"))
    assert int.from_bytes(magic[:2], "little") == 3571  # CPython 3.13's, Lib/importlib/_bootstrap_external.py
    sources = [p for p in bundle.rglob("*.py") if "__pycache__" not in p.parts]
    assert len(sources) > 500
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        assert pyc.is_file(), source
        header = pyc.read_bytes()[:8]
        assert header[:4] == magic, f"{pyc}: magic {header[:4]!r}"
        assert struct.unpack("<I", header[4:8])[0] == 0b01, f"{pyc}: hash-based (bit 0) without source check (bit 1)"
    assert {p.name.split(".")[-2] for p in bundle.rglob("*.pyc")} == {"cpython-313"}


@needs_runtime_python
def test_tracebacks_name_the_files_where_lambda_has_them(bundle: Path) -> None:
    pyc = bundle / "functions" / "connect" / "__pycache__" / "handler.cpython-313.pyc"
    code = f"import marshal; print(marshal.loads(open({str(pyc)!r}, 'rb').read()[16:]).co_filename)"
    assert _runtime_says(code).strip() == "/var/task/functions/connect/handler.py"


@needs_runtime_python
def test_bytecode_lands_in_the_bundle_whatever_the_callers_pycache_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PYTHONPYCACHEPREFIX`` would move every .pyc out of the bundle; the compile step ignores it."""
    root = _tree(tmp_path / "bundle")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "elsewhere"))
    assert compile_bytecode(root, SPEC.python_version, PYTHON)
    assert (root / "shared" / "__pycache__" / "__init__.cpython-313.pyc").is_file()
    assert not (tmp_path / "elsewhere").exists()


def test_without_an_interpreter_of_the_runtimes_version_the_bundle_ships_sources_and_says_what_it_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tree(tmp_path)
    assert not compile_bytecode(root, SPEC.python_version, None)
    assert not list(root.rglob("*.pyc"))
    warning = capsys.readouterr().err
    assert warning.startswith("warning: no Python 3.13 interpreter found")
    assert "ships sources without .pyc" in warning and "per cold start" in warning


def test_the_zipped_bundle_is_small(bundle_zip: Path) -> None:
    assert bundle_zip.stat().st_size < 10 * 1024 * 1024
    with zipfile.ZipFile(bundle_zip) as zipped:
        assert "functions/connect/handler.py" in zipped.namelist()


@pytest.fixture(scope="module")
def lambda_layout(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> coldstart.Layout:
    if PYTHON is None:
        pytest.skip(f"no Python {SPEC.python_version} here to run the bundle")
    with local_wheelhouse():
        return coldstart.prepare(bundle, tmp_path_factory.mktemp("layout"), PYTHON)


@needs_runtime_python
def test_the_layout_runs_the_runtimes_python(lambda_layout: coldstart.Layout) -> None:
    version = "import sys; print('%d.%d' % sys.version_info[:2])"
    assert coldstart.run_in_lambda_layout(lambda_layout, version, pyc=True).strip() == SPEC.python_version


@needs_runtime_python
@pytest.mark.parametrize("module", coldstart.HANDLER_MODULES)
def test_each_handler_imports_and_builds_its_services_from_the_bundle_alone(
    lambda_layout: coldstart.Layout, module: str
) -> None:
    """Under the runtime's Python, only the stdlib, the bundle and the runtime's boto3 are importable: a
    missing dependency, or one that does not work on that Python, fails here."""
    output = coldstart.run_in_lambda_layout(lambda_layout, coldstart.timed(module), pyc=True)
    assert '"import"' in output


# Counts the modules the import system compiles from source (every call goes through this method).
COUNT_COMPILES = """\
import sys, _frozen_importlib_external as external
compiled = []
original = external.SourceLoader.source_to_code
def source_to_code(self, data, path, **kwargs):
    compiled.append(path)
    return original(self, data, path, **kwargs)
external.SourceLoader.source_to_code = source_to_code
import functions.message.handler
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
bundle = [f for f in files if f.startswith(sys.path[0]) and f.endswith(".py")]
print(len(bundle), len(compiled))
"""


@needs_runtime_python
def test_the_runtime_loads_the_shipped_bytecode_and_compiles_nothing(lambda_layout: coldstart.Layout) -> None:
    total, compiled = map(int, coldstart.run_in_lambda_layout(lambda_layout, COUNT_COMPILES, pyc=True).split())
    assert total > 50
    assert compiled == 0
    # The same import without the .pyc compiles every module it loads from the bundle.
    total, compiled = map(int, coldstart.run_in_lambda_layout(lambda_layout, COUNT_COMPILES, pyc=False).split())
    assert compiled == total


@needs_runtime_python
def test_bytecode_makes_the_imports_cheaper(lambda_layout: coldstart.Layout) -> None:
    """The reason for shipping .pyc: compiling on every cold start costs more than the import itself."""
    [row] = coldstart.measure_modules(lambda_layout, ("functions.message.handler",), runs=3)
    assert row["import_pyc_ms"] < row["import_source_ms"]
