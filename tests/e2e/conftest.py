"""Fixtures for the end-to-end tests: the numeric app and the official Python SDK pointed at it (``js`` and
``app`` are tests/conftest.py's)."""

from __future__ import annotations

import pusher
import pytest

from tests.conftest import NUMERIC_APP
from tests.e2e.jsdriver import App
from tests.serverproc import ServerProcess


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
