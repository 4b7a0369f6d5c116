"""Fixtures for the REST tests: HTTP session, raw WebSocket clients, the Python SDK, unique channel names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pusher
import pytest

from tests.conftest import NUMERIC_APP
from tests.rest.clients import Creds, WsClient
from tests.serverproc import ServerProcess

NUMERIC = Creds.of(NUMERIC_APP)

Connect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
def numeric() -> Creds:
    return NUMERIC


@pytest.fixture
def uid() -> str:
    """A per-test suffix: tests share the session server, so each uses channel and user names of its own."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def connect(http: aiohttp.ClientSession) -> AsyncIterator[Connect]:
    """``await connect(server, creds)``: a raw WebSocket client, closed at teardown."""
    clients: list[WsClient] = []

    async def _connect(server: ServerProcess, creds: Creds = NUMERIC) -> WsClient:
        client = await WsClient.connect(http, server.ws_url, creds)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()


@pytest.fixture
def sdk(server: ServerProcess) -> pusher.Pusher:
    """The official Python SDK pointed at the session server's numeric app."""
    return pusher.Pusher(
        app_id=NUMERIC.id, key=NUMERIC.key, secret=NUMERIC.secret, host="127.0.0.1", port=server.port, ssl=False
    )
