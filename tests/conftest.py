"""Shared fixtures: a real local server on free ports (started per session, per module with the debug console,
or per test with its own config), an HTTP session, pusher-js clients driven from Node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from shared import settings
from tests.e2e.jsdriver import App, NodeDriver
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


@pytest.fixture(scope="module")
def console() -> Iterator[ServerProcess]:
    """A server with the debug console on, shared by a module's tests."""
    proc = ServerProcess({"apps": [DEFAULT_APP, NUMERIC_APP], "debug_console": True}).start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def js() -> AsyncIterator[NodeDriver]:
    """One short-lived Node process per test, killed at teardown whatever the test did."""
    driver = await NodeDriver.start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def app() -> App:
    """The default app, as pusher-js clients see it."""
    return App.of(DEFAULT_APP)
