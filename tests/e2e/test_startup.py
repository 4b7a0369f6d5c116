"""What ``python -m local_server`` (``make serve``) prints: one banner once it listens, one line when it cannot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import DEFAULT_APP
from tests.serverproc import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.e2e


def test_the_banner_says_where_to_connect_once(server: ServerProcess) -> None:
    output = server.output()
    assert output.count("listening on") == 1, output
    assert f"ws://127.0.0.1:{server.port}/app/{DEFAULT_APP['key']}" in output
    assert f"http://127.0.0.1:{server.metrics_port}/metrics" in output
    # An app from a config file: its secret stays out of stdout (which often ends up in a shared log).
    assert DEFAULT_APP["secret"] not in output and "(secret: in your config)" in output


def start_on(port: int, metrics_port: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "local_server", "--port", str(port), "--metrics-port", str(metrics_port)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("which", ["port", "metrics_port"])
def test_a_port_in_use_is_one_line_naming_it_and_how_to_change_it(server: ServerProcess, which: str) -> None:
    busy = server.port if which == "port" else server.metrics_port
    assert isinstance(busy, int)
    result = start_on(busy, free_port()) if which == "port" else start_on(free_port(), busy)
    assert result.returncode == 1
    assert result.stdout == ""
    flag, variable = ("--port", "SOCKLESS_PORT") if which == "port" else ("--metrics-port", "SOCKLESS_METRICS_PORT")
    [line] = result.stderr.splitlines()
    assert f"port {busy} " in line and "already in use" in line and flag in line and variable in line
