"""The pure core (shared/protocol, shared/auth) imports no I/O library (docs/contributing.md#conventions).

Each check runs in a fresh interpreter, so modules imported by other tests cannot hide or fake a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.serverproc import ROOT

FORBIDDEN = ("boto3", "botocore", "redis", "aiohttp")

PURE_MODULES = [
    "shared.protocol",
    "shared.protocol.channels",
    "shared.protocol.frames",
    "shared.auth",
    "shared.auth.signatures",
]

_PROBE = """
import importlib, json, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
forbidden = json.loads(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in forbidden)))
"""


def forbidden_imports(*modules: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(FORBIDDEN), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout)
    assert isinstance(found, list)
    return found


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io_library(module: str) -> None:
    assert forbidden_imports(module) == []


def test_the_probe_sees_a_forbidden_import() -> None:
    """Control: the check above would notice a leak."""
    assert "aiohttp" in forbidden_imports("shared.protocol", "aiohttp")
