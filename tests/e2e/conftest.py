"""Fixtures for the end-to-end tests: a Node process driving real pusher-js clients, and the apps' keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pusher
import pytest

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess


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
    return App.of(DEFAULT_APP)


@pytest.fixture
def numeric_app() -> App:
    """The app the Python SDK can address (it only accepts numeric app ids)."""
    return App.of(NUMERIC_APP)


@pytest.fixture
def python_sdk(server: ServerProcess, numeric_app: App) -> pusher.Pusher:
    """The official Python SDK pointed at the session server's numeric app."""
    return pusher.Pusher(
        app_id=numeric_app.id,
        key=numeric_app.key,
        secret=numeric_app.secret,
        ssl=False,
        host="127.0.0.1",
        port=server.port,
    )
