"""Fixtures for the end-to-end tests: a Node process driving real pusher-js clients, and the apps' keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.jsdriver import App, NodeDriver


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
