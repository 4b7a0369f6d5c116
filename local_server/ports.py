"""A free TCP port, for a server whose address must be known before it listens: the emulator's AWS endpoint
(its URL goes into the functions' environment first), and the benchmarks and the cost meter, which start
servers in child processes.

The kernel picks a port no socket is bound to; it is free when the caller binds it soon after unless another
process took it in between. The tests use ``tests/serverproc.free_port`` instead, which gives each pytest-xdist
worker its own block of ports so two workers never pick the same one in a row."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
