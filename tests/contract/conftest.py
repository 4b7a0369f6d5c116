"""Fixtures yielding one fresh driver per test, for every driver registered in ``tests/contract/drivers.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.limits.base import RateLimiter
from shared.store.base import ChannelStore
from shared.webhooks.base import WebhookQueue
from tests.contract import drivers


@pytest.fixture(params=drivers.params(drivers.STORE_DRIVERS))
async def channel_store(request: pytest.FixtureRequest) -> AsyncIterator[ChannelStore]:
    async with drivers.STORE_DRIVERS[request.param]() as store:
        yield store


@pytest.fixture(params=drivers.params(drivers.LIMITER_DRIVERS))
async def rate_limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    async with drivers.LIMITER_DRIVERS[request.param]() as limiter:
        yield limiter


@pytest.fixture(params=drivers.params(drivers.QUEUE_DRIVERS))
async def webhook_queue(request: pytest.FixtureRequest) -> AsyncIterator[WebhookQueue]:
    async with drivers.QUEUE_DRIVERS[request.param]() as queue:
        yield queue
