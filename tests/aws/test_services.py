"""The composition root picks the AWS drivers from configuration, with injected clients, and fails loudly
when a required name is missing (never a silent fallback to memory)."""

from __future__ import annotations

import pytest

from shared.limits.dynamodb import DynamoDBRateLimiter
from shared.sender.local import LocalSender
from shared.services import Clients, DriverError, build_services, create_queue, create_store
from shared.settings import QueueSettings, Settings, StoreSettings
from shared.store.base import Connection
from shared.store.dynamodb import DynamoDBChannelStore
from shared.types import AppId, SocketId
from shared.webhooks.base import WebhookJob
from shared.webhooks.sqs import SqsWebhookQueue
from tests.aws import backend


async def test_aws_drivers_come_from_settings_with_injected_clients(
    dynamodb: tuple[backend.AtomicRequests, str],
) -> None:
    client, table = dynamodb
    sqs = backend.client("sqs")
    queue_url = sqs.create_queue(QueueName="webhooks")["QueueUrl"]
    settings = Settings(
        store=StoreSettings(driver="dynamodb", table_name=table, region=backend.REGION),
        queue=QueueSettings(driver="sqs", queue_url=queue_url, region=backend.REGION),
    )
    services = build_services(settings, sender=LocalSender(), clients=Clients(dynamodb=client, sqs=sqs))
    assert isinstance(services.store, DynamoDBChannelStore)
    assert isinstance(services.queue, SqsWebhookQueue)
    assert isinstance(services.limiter, DynamoDBRateLimiter)

    # They work against the injected clients, and report healthy.
    await services.store.add_connection(Connection(AppId("a"), SocketId("1.1"), 0.0), None)
    assert await services.store.connection_count(AppId("a")) == 1
    await services.queue.push(WebhookJob(app_id=AppId("a"), event={"name": "x"}, target=0, time_ms=0))
    assert await services.queue.pending() == 1
    assert await services.limiter.hit("k", 1, 10)
    assert all((await services.health()).values())
    await services.close()


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: create_store(StoreSettings(driver="dynamodb")), id="store-without-table"),
        pytest.param(lambda: create_queue(QueueSettings(driver="sqs")), id="queue-without-url"),
    ],
)
def test_a_missing_name_fails_at_start_up(build: object) -> None:
    with pytest.raises(DriverError):
        build()  # type: ignore[operator]
