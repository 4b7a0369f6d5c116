"""Fixtures for the webhook tests: a real receiver per test and an HTTP session for raw WebSocket clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.webhooks.support import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = await Receiver().start()
    try:
        yield hooks
    finally:
        await hooks.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
