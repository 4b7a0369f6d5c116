"""How runtimes are wired: capabilities are declared protocols, checked once, and the tap is the engine's observer."""

from __future__ import annotations

import pytest

from functions.connections import ConnectionMap, Connections
from shared.debug.tap import DebugTap, TapMetrics
from shared.engine.observer import NULL_OBSERVER
from shared.redis.client import connect_redis
from shared.sender.local import LocalSender
from shared.services import build_services
from shared.settings import Settings
from shared.store.memory import MemoryChannelStore
from shared.store.redis import RedisChannelStore


def test_the_lambda_handlers_refuse_a_store_that_cannot_map_connection_ids() -> None:
    services = build_services(Settings(), sender=LocalSender())
    assert isinstance(services.store, MemoryChannelStore)
    with pytest.raises(TypeError, match="cannot map API Gateway connectionIds"):
        Connections(services)


async def test_the_redis_store_maps_connection_ids() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")  # never used: clients connect on their first command
    try:
        assert isinstance(RedisChannelStore(client), ConnectionMap)
    finally:
        await client.aclose()


def test_services_built_with_a_tap_report_to_it_and_count_frames_for_it() -> None:
    tap = DebugTap()
    services = build_services(Settings(), sender=LocalSender(), tap=tap)
    assert services.engine.observer is tap
    assert isinstance(services.engine.metrics, TapMetrics)
    plain = build_services(Settings(), sender=LocalSender())
    assert plain.engine.observer is NULL_OBSERVER
    assert not isinstance(plain.engine.metrics, TapMetrics)
