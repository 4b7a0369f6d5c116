"""What ``make serve`` and ``make emulate`` print once they listen: where to connect, and with which app.

A new user's first screen: the URLs of every port the process opened, the credentials of the app to use and
a pusher-js snippet that works as it is. The built-in default app's secret is printed (it is in the README);
an app from a config file is shown by id and key only, since stdout often ends up in a shared log.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence

from shared.settings import DEFAULT_APP, Settings

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def display_host(host: str) -> str:
    """The address a client on this machine uses: a wildcard listen address is reached through loopback."""
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def banner(
    settings: Settings,
    port: int,
    *,
    title: str,
    extra: Sequence[tuple[str, str]] = (),
    metrics: bool = True,
    notes: Sequence[str] = (),
) -> str:
    """The start-up banner; ``extra`` rows (label, text) describe ports only one mode opens, ``metrics`` says
    whether the Prometheus port is served (the emulator has none), ``notes`` end it."""
    host = display_host(settings.host)
    base = f"http://{host}:{port}"
    app = settings.apps[0]
    debug = f"{base}/debug" if settings.debug_console else "off (SOCKLESS_DEBUG_CONSOLE=true turns it on)"
    rows: list[tuple[str, str]] = [
        ("WebSocket", f"ws://{host}:{port}/app/{app.key}"),
        ("REST API", f"{base}/apps/{app.id}/events"),
        ("Debug console", debug),
    ]
    if metrics and settings.metrics_port is not None:
        rows.append(("Metrics", f"http://{host}:{settings.metrics_port}/metrics"))
    rows.extend(extra)
    if settings.apps == (DEFAULT_APP,):
        rows.append(("Default app", f"id {app.id}  key {app.key}  secret {app.secret}"))
    else:
        rows.extend(("App", f"id {a.id}  key {a.key}  (secret: in your config)") for a in settings.apps)
    width = max(len(label) for label, _ in rows) + 2
    lines = [title, *(f"  {label.ljust(width)}{text}" for label, text in rows)]
    indent = " " * (width + 2)
    ws_host = host.strip("[]")
    lines.append(f'  {"pusher-js".ljust(width)}new Pusher("{app.key}", {{ wsHost: "{ws_host}", wsPort: {port},')
    lines.append(f'{indent}  forceTLS: false, enabledTransports: ["ws"], cluster: "mt1" }})')
    lines.extend(f"  {note}" for note in notes)
    lines.append("Ctrl-C stops it.")
    return "\n".join(lines)


def busy_port(host: str, ports: Iterable[tuple[int | None, str]]) -> str | None:
    """The first of ``ports`` (port, how to change it) another process listens on, as one line for the user.

    Checked before starting, with the same ``SO_REUSEADDR`` bind the server makes, so "address already in
    use" is one sentence naming the port and its setting instead of a traceback from inside the event loop.
    """
    for port, how in ports:
        if not port:
            continue
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except OSError:
            return None  # an unresolvable host: the server's own bind reports it
        for family, kind, proto, _name, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        return f"port {port} on {host or '*'} is already in use; {how}"
    return None
