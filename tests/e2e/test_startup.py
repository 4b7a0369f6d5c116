"""What ``python -m local_server`` (``make serve``) prints: one banner once it listens, one line when it cannot."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request

import aiohttp
import pusher
import pytest

from local_server.emulator import synth
from tests.conftest import DEFAULT_APP
from tests.serverproc import ROOT, Lines, ServerProcess, free_port, stop
from tests.support import signed_params

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


# The interpreter `make serve` runs, with every module of the other extras' packages missing: what the server
# extra installs is then all it can import (its own dependencies, which may overlap, stay importable).
ONLY_THE_SERVER_EXTRA = """
import json, runpy, sys
blocked = set(json.loads(sys.argv.pop(1)))

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the server extra)", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv[0] = "local_server"
runpy.run_module("local_server", run_name="__main__", alter_sys=True)
"""


def modules_of_the_other_extras() -> list[str]:
    """Top-level modules of the packages only the aws, dev and infra extras install (boto3, moto, the CDK...)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    needed = names(project["dependencies"]) | names(extras["server"])
    others = set().union(*(names(reqs) for extra, reqs in extras.items() if extra != "server")) - needed
    assert {"boto3", "moto", "aws-cdk-lib", "pytest"} <= others
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if {d.lower().replace("_", "-") for d in dists} & others and not module.startswith("_")
    )


async def test_make_serve_needs_only_the_server_extra(http: aiohttp.ClientSession) -> None:
    """``make serve`` installs the server extra alone (~70 MB, not the ~950 MB of every extra): the server, its
    debug console, REST API, WebSocket endpoint and metrics run without boto3, moto, pytest or the CDK."""
    blocked = modules_of_the_other_extras()
    assert "boto3" in blocked and "moto" in blocked
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKLESS_")}
    env.update(SOCKLESS_DEBUG_CONSOLE="true", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-c", ONLY_THE_SERVER_EXTRA, json.dumps(blocked)]
    command += ["--port", str(port), "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines = Lines(proc)
    try:
        await asyncio.to_thread(lines.expect, "Ctrl-C stops it")
        base = f"http://127.0.0.1:{port}"
        async with http.ws_connect(f"ws://127.0.0.1:{port}/app/{DEFAULT_APP['key']}?protocol=7") as ws:
            assert (await ws.receive_json(timeout=5))["event"] == "pusher:connection_established"
            await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "extra"}})
            assert (await ws.receive_json(timeout=5))["event"] == "pusher_internal:subscription_succeeded"
            path = f"/apps/{DEFAULT_APP['id']}/events"
            body = json.dumps({"name": "e", "channel": "extra", "data": "{}"}).encode()
            async with http.post(base + path, params=signed_params("POST", path, body), data=body) as response:
                assert response.status == 200, await response.text()
            while (await ws.receive_json(timeout=5))["event"] != "e":  # subscription_count may come first
                pass
        for url in (f"{base}/debug", f"{base}/up", f"http://127.0.0.1:{metrics_port}/metrics"):
            async with http.get(url) as response:
                assert response.status == 200, url
        stop(proc)
        rest = await asyncio.to_thread(proc.stdout.read) if proc.stdout else ""
        output = "\n".join([*lines.seen, rest])
        assert "not in the server extra" not in output and "Traceback" not in output, output
    finally:
        stop(proc)


def test_the_license_is_an_spdx_expression_the_build_backend_reads_without_a_warning() -> None:
    """A ``project.license`` table makes setuptools >= 77 warn on every install (PEP 639 deprecates it); an SPDX
    string needs setuptools >= 77 to be read at all, so the two go together."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    [setuptools] = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum is not None and int(minimum[1]) >= 77, setuptools
