"""Fixtures for the debug console tests: a server with the console on, pusher-js clients, a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess

CONSOLE_CONFIG: dict[str, Any] = {"apps": [DEFAULT_APP, NUMERIC_APP], "debug_console": True}


@pytest.fixture(scope="module")
def console() -> Iterator[ServerProcess]:
    """A loopback server with the debug console on, shared by a module's tests."""
    proc = ServerProcess(CONSOLE_CONFIG).start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def js() -> AsyncIterator[NodeDriver]:
    driver = await NodeDriver.start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def app() -> App:
    return App.of(DEFAULT_APP)
