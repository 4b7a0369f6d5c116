"""Shared fixtures: a real local server on free ports, started per session or per test with its own config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import settings
from tests.serverproc import ServerProcess

# The app `make serve` runs (shared.settings.DEFAULT_APP), as a config file entry: tests that use "the default
# app" use exactly what a new user gets.
DEFAULT_APP: dict[str, Any] = settings.DEFAULT_APP.model_dump(mode="json", exclude_defaults=True)
# A second app (numeric ids, as the Python `pusher` SDK requires): apps are kept apart.
NUMERIC_APP: dict[str, Any] = {**DEFAULT_APP, "id": "12345", "key": "numeric-key", "secret": "numeric-secret"}


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """The default server, shared by tests that do not change its configuration."""
    proc = ServerProcess({"apps": [DEFAULT_APP, NUMERIC_APP]}).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Factory for a server with a test's own config; every server started is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(config: dict[str, Any], **kwargs: Any) -> ServerProcess:
        proc = ServerProcess(config, **kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()
