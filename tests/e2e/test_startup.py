"""What ``python -m local_server`` (``make serve``) prints: one banner once it listens, one line when it cannot."""

from __future__ import annotations

import subprocess
import sys
import time

import pusher
import pytest

from tests.conftest import DEFAULT_APP
from tests.serverproc import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.e2e


def banner_of(server: ServerProcess, last_line: str = "Ctrl-C stops it") -> str:
    """The output once the banner is complete: the port accepts connections a moment before it is printed."""
    deadline = time.monotonic() + 10
    while last_line not in (output := server.output()):
        assert time.monotonic() < deadline, output
        time.sleep(0.05)
    return output


def test_the_banner_says_where_to_connect_once(server: ServerProcess) -> None:
    output = banner_of(server)
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


@pytest.mark.parametrize("show", [pytest.param(False, id="hidden"), pytest.param(True, id="show-emf")])
def test_the_emulator_keeps_emf_documents_off_the_terminal_unless_asked(show: bool) -> None:
    """Each invocation writes an EMF document to stdout (as on AWS); ``make emulate`` hides them by default."""
    args = ("--emulate-lambda", "--sweep-interval", "0", *(("--show-emf",) if show else ()))
    server = ServerProcess({"apps": [DEFAULT_APP]}, args=args).start(timeout=60)
    try:
        client = pusher.Pusher(
            app_id=DEFAULT_APP["id"],
            key=DEFAULT_APP["key"],
            secret=DEFAULT_APP["secret"],
            host="127.0.0.1",
            port=server.port,
            ssl=False,
        )
        client.trigger("emf", "counted", {})  # the http_api function flushes its counts before it answers
        deadline = time.monotonic() + 5
        while '"CloudWatchMetrics"' not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        output = banner_of(server)
        assert ('"CloudWatchMetrics"' in output) is show, output
        # The same banner as the local server's, naming the two ports only the emulator opens.
        assert output.count("listening on") == 1 and "AWS endpoint" in output and "moto" in output
        assert "/metrics" not in output  # no Prometheus port: the functions write EMF
    finally:
        server.cleanup()
