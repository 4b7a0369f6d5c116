"""What ``python -m local_server`` (``make serve``) prints: one banner once it listens, one line when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pusher
import pytest

from local_server.emulator import synth
from tests.conftest import DEFAULT_APP
from tests.serverproc import ROOT, Lines, ServerProcess, free_port, stop

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


def make_emulate(port: int, args: str) -> subprocess.Popen[str]:
    """``make emulate`` as a user runs it (no config, the Makefile's recipe and defaults), on ``port``.

    ``-o .venv/.installed`` keeps make from (re)installing into the venv the suite runs in; ``PY`` is this
    interpreter. The template is synthesized first (cached), so the start-up wait never includes a cdk synth.
    """
    synth.template({})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKLESS_")}
    env.update(SOCKLESS_PORT=str(port), PYTHONUNBUFFERED="1")
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", "emulate"]
    if args:
        command.append(f"ARGS={args}")
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


@pytest.mark.parametrize("show", [pytest.param(False, id="hidden"), pytest.param(True, id="show-emf")])
def test_make_emulate_has_the_console_and_keeps_emf_off_the_terminal_unless_asked(show: bool) -> None:
    """Each invocation writes an EMF document to stdout (as on AWS); ``make emulate`` hides them by default,
    says so in its banner, and serves the debug console like ``make serve``."""
    port = free_port()
    proc = make_emulate(port, "--sweep-interval 0" + (" --show-emf" if show else ""))
    lines = Lines(proc)
    try:
        lines.expect("Ctrl-C stops it", timeout=60)
        banner = "\n".join(lines.seen)
        # The same banner as the local server's, naming the two ports only the emulator opens.
        assert banner.count("listening on") == 1, banner
        assert "AWS endpoint" in banner and "management API + Lambda Invoke" in banner and "moto" in banner
        assert "/metrics" not in banner  # no Prometheus port: the functions write EMF
        assert f"http://127.0.0.1:{port}/debug" in banner
        [emf] = [line for line in lines.seen if "CloudWatch EMF" in line]
        assert ("printed" in emf) is show and ("off the terminal" in emf) is not show, emf
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug", timeout=10) as response:
            assert response.status == 200
        client = pusher.Pusher(
            app_id=DEFAULT_APP["id"],
            key=DEFAULT_APP["key"],
            secret=DEFAULT_APP["secret"],
            host="127.0.0.1",
            port=port,
            ssl=False,
        )
        client.trigger("emf", "counted", {})  # the http_api function flushes its counts before it answers
        if show:
            lines.expect('"CloudWatchMetrics"', timeout=10)
        else:
            client.trigger("emf", "counted", {})
            with pytest.raises(AssertionError):
                lines.expect('"CloudWatchMetrics"', timeout=2)
    finally:
        stop(proc)
