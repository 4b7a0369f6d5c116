"""README.md's Quickstart, run as written against ``make serve`` with its defaults.

Every fenced block of the Quickstart is read from README.md when the test runs (a block the test does not know
fails it), so the Quickstart cannot drift from what works. Only the ports differ, so the suite can run next to a
developer's own server: ``make serve`` gets free ones through SOCKLESS_PORT / SOCKLESS_METRICS_PORT, and 6001 /
9601 are replaced by them in the snippets' text. The pusher-js and Node SDK snippets run in Node with the
project's node_modules, the Python snippet with the official ``pusher`` SDK of this venv.

Laravel cannot run here (no PHP): its block is the .env a Laravel app reads, so the test reads it the way the
stock ``config/broadcasting.php`` (the ``pusher`` connection) and ``resources/js/echo.js`` that
``php artisan install:broadcasting`` writes do, and drives pusher-js (what Echo wraps) and a server SDK with the
options those files would build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pusher
import pytest

from tests.serverproc import ROOT, Lines, free_port, stop
from tests.support import dotenv

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TIMEOUT = 15.0


def quickstart() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Quickstart\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


@dataclass(frozen=True)
class Quickstart:
    """The Quickstart's blocks by role; each role exactly once, and nothing else."""

    commands: list[str]
    subscriber: str  # pusher-js
    node_publisher: str  # the Node server SDK
    python_publisher: str  # the Python server SDK
    laravel_env: str  # a Laravel app's .env

    @classmethod
    def read(cls) -> Quickstart:
        roles: dict[str, str] = {}
        for lang, body in FENCE.findall(quickstart()):
            if lang == "sh":
                role = "commands"
            elif lang == "js" and 'from "pusher-js"' in body:
                role = "subscriber"
            elif lang == "js" and 'from "pusher"' in body:
                role = "node_publisher"
            elif lang == "python":
                role = "python_publisher"
            elif lang == "dotenv":
                role = "laravel_env"
            else:
                raise AssertionError(f"a Quickstart block this test does not run ({lang!r}):\n{body}")
            assert role not in roles, f"two Quickstart blocks for {role}: the test runs one"
            roles[role] = body
        assert set(roles) == {"commands", "subscriber", "node_publisher", "python_publisher", "laravel_env"}
        commands = [line.split("#")[0].strip() for line in roles.pop("commands").splitlines()]
        return cls(commands=[c for c in commands if c], **roles)


@dataclass
class Ports:
    port: int
    metrics_port: int

    def apply(self, text: str) -> str:
        """The README's text with its default ports replaced by this server's."""
        assert "6001" in text or "9601" in text, f"no default port in:\n{text}"
        return text.replace("6001", str(self.port)).replace("9601", str(self.metrics_port))


@pytest.fixture(scope="module")
def readme() -> Quickstart:
    return Quickstart.read()


@pytest.fixture(scope="module")
def served(readme: Quickstart) -> Iterator[tuple[Ports, Lines]]:
    """``make serve`` as the Quickstart says, with no configuration but the ports.

    ``-o .venv/.installed-server`` keeps make from (re)installing into the venv the suite runs in; ``PY`` is
    this interpreter. Everything else (the recipe, the debug console switch, the defaults) is the Makefile's.
    """
    assert readme.commands == ["make serve"], "the Quickstart's commands changed: run the new ones here"
    ports = Ports(free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKLESS_")}
    env.update(SOCKLESS_PORT=str(ports.port), SOCKLESS_METRICS_PORT=str(ports.metrics_port), PYTHONUNBUFFERED="1")
    command = ["make", "--no-print-directory", "-o", ".venv/.installed-server", f"PY={sys.executable}", "serve"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines = Lines(proc)
    try:
        lines.expect("Ctrl-C stops it")
        yield ports, lines
    finally:
        stop(proc)


def run_node(tmp_path: Path, name: str, source: str) -> subprocess.Popen[str]:
    """A snippet as an ES module in Node, resolving packages from the project's node_modules."""
    modules = tmp_path / "node_modules"
    if not modules.exists():
        modules.symlink_to(ROOT / "node_modules", target_is_directory=True)
    script = tmp_path / name
    script.write_text(source, encoding="utf-8")
    return subprocess.Popen(
        ["node", str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def credentials(python_snippet: str) -> dict[str, str]:
    """app_id / key / secret as the Python snippet spells them."""
    found = dict(re.findall(r'(app_id|key|secret)="([^"]*)"', python_snippet))
    assert set(found) == {"app_id", "key", "secret"}, python_snippet
    return found


def wait_until_occupied(client: pusher.Pusher, channel: str) -> None:
    """A subscriber is in place before anything is published (an event before it would be lost)."""
    deadline = time.monotonic() + TIMEOUT
    while not client.channel_info(channel).get("occupied"):
        assert time.monotonic() < deadline, f"nobody subscribed to {channel}"
        time.sleep(0.05)


def test_make_serve_prints_the_readme_defaults(readme: Quickstart, served: tuple[Ports, Lines]) -> None:
    """The banner names the README's app, and the URLs the Quickstart mentions answer."""
    ports, lines = served
    creds = credentials(readme.python_publisher)
    banner = "\n".join(lines.seen)
    assert f"id {creds['app_id']}  key {creds['key']}  secret {creds['secret']}" in banner
    assert banner.count("listening on") == 1, banner
    assert f"http://127.0.0.1:{ports.port}/debug" in banner
    assert f"http://127.0.0.1:{ports.metrics_port}/metrics" in banner
    urls = re.findall(r"http://127\.0\.0\.1:\d+/\S*\w", quickstart())
    assert urls, "the Quickstart names no URL"
    for url in urls:
        with urllib.request.urlopen(ports.apply(url), timeout=TIMEOUT) as response:
            assert response.status == 200, url


def test_pusher_js_receives_what_the_node_and_python_sdks_publish(
    readme: Quickstart, served: tuple[Ports, Lines], tmp_path: Path
) -> None:
    ports, _ = served
    creds = credentials(readme.python_publisher)
    rest = pusher.Pusher(**creds, host="127.0.0.1", port=ports.port, ssl=False)
    channel = re.findall(r'subscribe\("([^"]+)"\)', readme.subscriber)[0]
    subscriber = run_node(tmp_path, "subscriber.mjs", ports.apply(readme.subscriber))
    received = Lines(subscriber)
    try:
        wait_until_occupied(rest, channel)

        publisher = run_node(tmp_path, "publisher.mjs", ports.apply(readme.node_publisher))
        out, _ = publisher.communicate(timeout=TIMEOUT)
        assert publisher.returncode == 0, out
        received.expect(r"^received \{ message: 'hello' \}$")

        python = subprocess.run(
            [sys.executable, "-c", ports.apply(readme.python_publisher)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert python.returncode == 0, python.stderr
        received.expect(r"^received \{ message: 'hello' \}$")
    finally:
        stop(subscriber)


def test_laravel_env_configures_the_broadcaster_and_echo(
    readme: Quickstart, served: tuple[Ports, Lines], tmp_path: Path
) -> None:
    ports, _ = served
    env = dotenv(ports.apply(readme.laravel_env))
    assert env["BROADCAST_CONNECTION"] == "pusher"
    # config/broadcasting.php, connection "pusher": the PHP SDK gets key, secret, app_id and
    # options host, port, scheme, useTLS = (scheme === 'https').
    broadcaster = pusher.Pusher(
        app_id=env["PUSHER_APP_ID"],
        key=env["PUSHER_APP_KEY"],
        secret=env["PUSHER_APP_SECRET"],
        host=env["PUSHER_HOST"],
        port=int(env["PUSHER_PORT"]),
        ssl=env["PUSHER_SCHEME"] == "https",
    )
    # resources/js/echo.js: new Echo({broadcaster: 'pusher', key, cluster, wsHost, wsPort, wssPort,
    # forceTLS: scheme === 'https', enabledTransports: ['ws', 'wss']}); Echo hands these to new Pusher(key, ...).
    echo = {
        "cluster": env["VITE_PUSHER_APP_CLUSTER"],
        "wsHost": env["VITE_PUSHER_HOST"],
        "wsPort": int(env["VITE_PUSHER_PORT"]),
        "wssPort": int(env["VITE_PUSHER_PORT"]),
        "forceTLS": env["VITE_PUSHER_SCHEME"] == "https",
        "enabledTransports": ["ws", "wss"],
    }
    source = (
        'import Pusher from "pusher-js";\n'
        f"const echo = new Pusher({json.dumps(env['VITE_PUSHER_APP_KEY'])}, {json.dumps(echo)});\n"
        'echo.subscribe("orders").bind("App\\\\Events\\\\OrderShipped", (data) => console.log("shipped", data.id));\n'
    )
    subscriber = run_node(tmp_path, "echo.mjs", source)
    received = Lines(subscriber)
    try:
        wait_until_occupied(broadcaster, "orders")
        broadcaster.trigger("orders", "App\\Events\\OrderShipped", {"id": 42})
        received.expect(r"^shipped 42$")
    finally:
        stop(subscriber)
