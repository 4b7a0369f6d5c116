"""``DynamoDBAppStore``: apps in a table, read back exactly, cached per container, key rotation safe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.apps.dynamodb import DynamoDBAppStore
from shared.errors import StoreUnavailable
from shared.settings import AppConfig
from shared.types import AppId
from tests.aws import backend

APP = AppConfig(
    id=AppId("12345"),
    key="app-key",
    secret="app-secret",
    max_connections=500,
    enable_client_messages=True,
    max_presence_member_size_in_kb=2.5,
    allowed_origins=("https://*.example.com",),
    webhooks=(
        {"url": "https://hooks.example.com/pusher", "event_types": ["channel_occupied"], "headers": {"X-A": "b"}},
        {"lambda": {"function_name": "on-webhook", "region": "eu-west-1"}, "filter": {"channel_prefix": "presence-"}},
    ),  # type: ignore[arg-type]
)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def apps(dynamodb: tuple[backend.AtomicRequests, str], ticks: Ticks) -> AsyncIterator[DynamoDBAppStore]:
    client, table = dynamodb
    store = DynamoDBAppStore(table, client=client, cache_seconds=60, missing_cache_seconds=5, clock=ticks)
    yield store
    await store.close()


async def test_an_app_reads_back_exactly_by_id_and_by_key(apps: DynamoDBAppStore) -> None:
    await apps.put_app(APP)
    assert await apps.by_id("12345") == APP
    assert await apps.by_key("app-key") == APP
    assert await apps.by_key("other") is None
    assert await apps.by_id("other") is None


async def test_the_app_item_is_plain_attributes_an_operator_can_edit(
    apps: DynamoDBAppStore, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    client, table = dynamodb
    await apps.put_app(APP)
    item = client.get_item(TableName=table, Key={"pk": {"S": "cfg#app#12345"}, "sk": {"S": "app"}})["Item"]
    assert item["key"] == {"S": "app-key"}
    assert item["max_connections"] == {"N": "500"}
    assert item["enabled"] == {"BOOL": True}
    assert item["webhooks"]["L"][1]["M"]["lambda"]["M"]["function_name"] == {"S": "on-webhook"}


async def test_lookups_are_cached_in_the_container_until_they_expire(
    apps: DynamoDBAppStore, dynamodb: tuple[backend.AtomicRequests, str], ticks: Ticks
) -> None:
    client, table = dynamodb
    await apps.put_app(APP)
    await apps.by_key("app-key")
    client.calls.clear()
    for _ in range(5):
        assert await apps.by_key("app-key") == APP
        assert await apps.by_id("12345") == APP
    assert client.calls == []

    # An operator disables the app in the console; warm containers see it once their cache expires.
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "cfg#app#12345"}, "sk": {"S": "app"}},
        UpdateExpression="SET enabled = :f",
        ExpressionAttributeValues={":f": {"BOOL": False}},
    )
    assert (await apps.by_key("app-key")).enabled  # type: ignore[union-attr]
    ticks.now += 61
    assert not (await apps.by_key("app-key")).enabled  # type: ignore[union-attr]


async def test_unknown_keys_are_cached_briefly_too(
    apps: DynamoDBAppStore, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """A client hammering with a bad key costs one read per container, not one per connection."""
    client, _ = dynamodb
    assert await apps.by_key("nope") is None
    client.calls.clear()
    assert await apps.by_key("nope") is None
    assert client.calls == []


async def test_a_rotated_key_stops_working_and_the_new_one_works(apps: DynamoDBAppStore) -> None:
    await apps.put_app(APP)
    rotated = APP.model_copy(update={"key": "new-key"})
    await apps.put_app(rotated)
    assert await apps.by_key("app-key") is None
    assert await apps.by_key("new-key") == rotated
    await apps.delete_app("12345")
    assert await apps.by_id("12345") is None
    assert await apps.by_key("new-key") is None


async def test_an_invalid_item_is_an_error_not_a_default(
    apps: DynamoDBAppStore, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    client, table = dynamodb
    await apps.put_app(APP)
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "cfg#app#12345"}, "sk": {"S": "app"}},
        UpdateExpression="SET max_conections = :n",  # a typo: refused like in the config file
        ExpressionAttributeValues={":n": {"N": "5"}},
    )
    fresh = DynamoDBAppStore(table, client=client)
    with pytest.raises(StoreUnavailable, match="not a valid app"):
        await fresh.by_id("12345")
