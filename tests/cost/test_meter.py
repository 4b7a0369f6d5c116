"""The meter against operations whose bill is known: DynamoDB units by item size through the real store on
moto, and the rounding rules of API Gateway, Lambda and SQS (cost/meter.py, docs/cost.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cost import model
from cost.meter import Meter, dynamodb_units, item_size, lambda_gb_seconds, ws_messages
from cost.prices import PRICES
from shared.store.base import Connection, JoinResult, Member
from shared.store.dynamodb import DynamoDBChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.aws import backend
from tests.aws.conftest import Clock

APP = AppId("app-1")
WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


class Metered:
    """The store's client, with every request counted by the meter: writes sized against the table as it
    was just before them (what DynamoDB bills: the larger of before and after), reads by what they returned."""

    def __init__(self, client: backend.AtomicRequests, meter: Meter) -> None:
        self.client = client
        self.meter = meter
        self.raw = backend.client("dynamodb")

    def size_of(self, table: str, key: dict[str, Any]) -> int | None:
        found = self.raw.get_item(TableName=table, Key=dict(key), ConsistentRead=True).get("Item")
        return None if found is None else item_size(found)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr) or name.startswith("get_waiter") or name == "exceptions":
            return attr
        operation = "".join(part.title() for part in name.split("_"))

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in WRITES:
                self.meter.dynamodb(operation, kwargs, None, self.size_of)  # billed whether or not it commits
                return attr(*args, **kwargs)
            response = attr(*args, **kwargs)
            self.meter.dynamodb(operation, kwargs, response)
            return response

        return call


@pytest.fixture
async def metered(
    dynamodb: tuple[backend.AtomicRequests, str], clock: Clock
) -> AsyncIterator[tuple[DynamoDBChannelStore, Meter]]:
    client, table = dynamodb
    meter = Meter()
    store = DynamoDBChannelStore(table, client=Metered(client, meter), clock=clock)
    yield store, meter
    await store.close()


def conn(n: int, clock: Clock) -> Connection:
    return Connection(app_id=APP, socket_id=SocketId(f"{n}.{n}"), connected_at=clock(), connection_id=f"cid-{n}=")


async def test_a_reconnect_counts_the_write_units_the_model_prices(
    metered: tuple[DynamoDBChannelStore, Meter], clock: Clock
) -> None:
    """connect (3) + subscribe to an occupied private channel (6) + disconnect (8): what cost/model.py
    charges per reconnect, less the first subscriber's index item, which the model spreads over a channel.
    Before the socket's channel list moved onto its connection item: 3 + 8 + 9."""
    store, meter = metered
    assert await store.add_connection(conn(1, clock), None)
    assert isinstance(await store.subscribe(APP, SocketId("1.1"), ChannelName("private-a"), None, 100), JoinResult)
    steps = []
    for step in ("connect", "subscribe", "disconnect"):
        meter.units.clear()
        if step == "connect":
            assert await store.add_connection(conn(2, clock), None)
        elif step == "subscribe":
            await store.subscribe(APP, SocketId("2.2"), ChannelName("private-a"), None, 100)
        else:
            assert await store.remove_connection(APP, SocketId("2.2")) is not None
        steps.append(meter.snapshot().get("dynamodb_wru", 0))
    assert steps == [3, 6, 8]
    assert steps[0] == model.PROFILE["connect"].wru
    assert steps[2] == model.PROFILE["disconnect"].wru
    assert model.PROFILE["subscribe"].wru - steps[1] < 0.2  # + the index item of a first subscriber
    assert sum(steps) <= 17


async def test_write_units_follow_the_item_size(metered: tuple[DynamoDBChannelStore, Meter], clock: Clock) -> None:
    """A presence member with 3 KB of user_info is a 4 KB item: its put costs 4 units (x2 in a transaction)."""
    store, meter = metered
    assert await store.add_connection(conn(1, clock), None)
    meter.units.clear()
    member = Member(UserId("u1"), {"bio": "x" * 3000})
    assert isinstance(await store.subscribe(APP, SocketId("1.1"), ChannelName("presence-a"), member, 100), JoinResult)
    assert meter.snapshot()["dynamodb_wru"] >= 2 * 4 + 2 * 3  # the member item, and 3 small items


def test_reads_round_to_four_kilobytes_and_halve_when_eventually_consistent() -> None:
    small = {"Item": {"pk": {"S": "a"}, "v": {"S": "x" * 100}}}
    big = {"Items": [{"pk": {"S": "a"}, "v": {"S": "x" * 5000}}]}
    assert dynamodb_units("GetItem", {"ConsistentRead": True}, small) == {"RRU": 1}
    assert dynamodb_units("GetItem", {}, small) == {"RRU": 0.5}
    assert dynamodb_units("Query", {"ConsistentRead": True}, big) == {"RRU": 2}
    assert dynamodb_units("GetItem", {"ConsistentRead": True}, {}) == {"RRU": 1}  # a miss still costs a unit


def test_transactions_cost_twice_and_batches_per_item() -> None:
    item = {"pk": {"S": "a"}, "sk": {"S": "b"}}
    put = {"Put": {"TableName": "t", "Item": item}}
    assert dynamodb_units("TransactWriteItems", {"TransactItems": [put, put]}) == {"WRU": 4}
    batch = {"RequestItems": {"t": [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": item}}]}}
    assert dynamodb_units("BatchWriteItem", batch) == {"WRU": 2}
    assert dynamodb_units("PutItem", {"Item": {**item, "v": {"S": "x" * 1500}}}) == {"WRU": 2}


def test_api_gateway_lambda_and_sqs_rounding() -> None:
    assert [ws_messages(n) for n in (1, 32 * 1024, 32 * 1024 + 1, 128 * 1024)] == [1, 1, 2, 4]
    assert lambda_gb_seconds(0.0101, 1024) == pytest.approx(0.011)  # 10.1 ms bills as 11 ms
    assert lambda_gb_seconds(0.2, 512) == pytest.approx(0.1)
    meter = Meter({"message": 1024})
    meter.invocation("message", 0.0101, init_s=0.6)
    meter.sqs("SendMessage", {"MessageBody": "x" * (64 * 1024 + 1)})
    meter.sqs("ReceiveMessage", {})  # an empty receive is a request too
    units = meter.snapshot()
    assert units["lambda_request"] == 1
    assert units["lambda_init_gb_s"] == pytest.approx(0.6)
    assert units["sqs_standard_request"] == 3
    assert meter.usd()["lambda_request"] == pytest.approx(PRICES["lambda_request"].usd)


def test_access_log_lines_are_counted_but_billed_only_when_the_stages_write_them() -> None:
    meter = Meter()
    meter.ws_in(100)
    assert meter.snapshot()["logs_ingest"] > 0
    meter = Meter()
    meter.access_logs = False  # -c access_logs=false: the emulator reads it from the template's stages
    meter.ws_in(100)
    assert "logs_ingest" not in meter.snapshot()
    assert meter.counts["access_log_lines"] == 1
