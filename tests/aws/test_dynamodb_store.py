"""What the DynamoDB store adds to the ``ChannelStore`` contract (run in tests/contract): the connectionId map,
the sweep of silent connections, removals that survive a crash, pagination, TTLs and error translation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from cost.meter import dynamodb_units
from shared.errors import StoreUnavailable
from shared.store.base import Connection, JoinResult, Member
from shared.store.dynamodb import REMOVAL_LEASE_SECONDS, DynamoDBChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.aws import backend
from tests.aws.conftest import Clock

APP = AppId("app-1")
PRESENCE = ChannelName("presence-room")
PUBLIC = ChannelName("news")
PRIVATE = ChannelName("private-news")


def sid(n: int) -> SocketId:
    return SocketId(f"{n}.{n}")


async def connect(store: DynamoDBChannelStore, clock: Clock, n: int, app: AppId = APP) -> SocketId:
    connection = Connection(app_id=app, socket_id=sid(n), connected_at=clock(), connection_id=f"cid-{n}=")
    assert await store.add_connection(connection, None)
    return connection.socket_id


async def join(store: DynamoDBChannelStore, socket_id: SocketId, channel: ChannelName, user: str | None = None) -> None:
    member = Member(UserId(user), {"name": user}) if user else None
    assert isinstance(await store.subscribe(APP, socket_id, channel, member, 100), JoinResult)


async def sweep(store: DynamoDBChannelStore, open_ids: set[str] = frozenset()) -> set[SocketId]:  # type: ignore[assignment]
    """What ``functions/sweep`` does with the connections that came due, API Gateway holding ``open_ids``:
    the gone ones are removed (and an entry without its connection dropped). Returns the sockets found gone."""
    gone: set[SocketId] = set()
    for connection in await store.due_connections():
        if connection.connection_id in open_ids:
            continue
        await store.remove_connection(connection.app_id, connection.socket_id)
        if await store.get_connection(connection.app_id, connection.socket_id) is None:
            await store.forget_entry(connection)
        gone.add(connection.socket_id)
    return gone


def items(dynamodb: tuple[backend.AtomicRequests, str]) -> list[dict[str, Any]]:
    client, table = dynamodb
    found: list[dict[str, Any]] = client.scan(TableName=table, ConsistentRead=True)["Items"]
    return found


# -- socket id <-> connectionId ---------------------------------------------------------------------------


async def test_connection_id_maps_both_ways(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    a = await connect(store, clock, 1)
    fresh = DynamoDBChannelStore(store.table, client=dynamodb[0])  # another container: empty caches
    assert await fresh.socket_for_connection("cid-1=") == (APP, a)
    assert await fresh.connection_ids(APP, [a, sid(9)]) == {a: "cid-1="}
    connection = await fresh.get_connection(APP, a)
    assert connection is not None
    assert connection.connection_id == "cid-1="
    assert await fresh.socket_for_connection("unknown") is None


async def test_connection_id_map_is_forgotten_with_the_connection(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    a = await connect(store, clock, 1)
    await store.remove_connection(APP, a)
    fresh = DynamoDBChannelStore(store.table, client=dynamodb[0])
    assert await fresh.socket_for_connection("cid-1=") is None
    assert await fresh.connection_ids(APP, [a]) == {}


async def test_fan_out_resolves_recipients_without_extra_reads(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """Subscriber items carry the connectionId: a broadcast right after ``sockets()`` reads nothing more."""
    sockets = [await connect(store, clock, n) for n in range(12)]
    for socket_id in sockets:
        await join(store, socket_id, PUBLIC)
    client, _ = dynamodb
    reader = DynamoDBChannelStore(store.table, client=client)  # a cold container
    client.calls.clear()
    subscribers = await reader.sockets(APP, PUBLIC)
    resolved = await reader.connection_ids(APP, subscribers)
    assert len(resolved) == 12
    assert client.calls == ["query"]


async def test_cold_resolution_reads_in_batches_of_100(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    sockets = [await connect(store, clock, n) for n in range(101)]
    client, _ = dynamodb
    cold = DynamoDBChannelStore(store.table, client=client)
    client.calls.clear()
    assert len(await cold.connection_ids(APP, sockets)) == 101
    assert client.calls == ["batch_get_item"] * 2


async def test_a_retried_connect_is_recorded_once(store: DynamoDBChannelStore, clock: Clock) -> None:
    connection = Connection(app_id=APP, socket_id=sid(1), connected_at=clock(), connection_id="cid-1=")
    assert await store.add_connection(connection, 5)
    assert await store.add_connection(connection, 5)
    assert await store.connection_count(APP) == 1


# -- a connect: what it costs, and what it leaves when it dies half-way --------------------------------------


async def test_a_connect_costs_three_write_units(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """The quota (1), the sweep entry that is also the connectionId map (1), the connection (1): none of
    them in a transaction, which would double the last two."""
    client, _ = dynamodb
    units = metered(client)
    await connect(store, clock, 1)
    assert units == Counter({"WRU": 3})
    units.clear()
    assert await store.add_connection(Connection(APP, sid(2), clock(), connection_id="cid-2="), 5)
    assert units == Counter({"WRU": 3})


async def test_a_connect_whose_answer_was_lost_keeps_its_slot(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """The SDK sends a write again when its answer is lost (a timeout, a 500 after the write): the connection's
    put then finds its own item, which must not pass for an earlier connect's record (and give the slot back)."""
    client, _ = dynamodb
    raw = backend.client("dynamodb")  # the same emulated account, outside the request lock

    def first_attempt_applied(operation: str, kwargs: dict[str, Any]) -> Exception | None:
        if operation == "put_item":
            raw.put_item(**kwargs)
            client.fault = None
        return None

    client.fault = first_attempt_applied
    assert await store.add_connection(Connection(APP, sid(1), clock(), connection_id="cid-1="), 5)
    assert client.fault is None
    assert await store.get_connection(APP, sid(1)) is not None
    assert await store.connection_count(APP) == 1


# The connect below makes 3 requests (the quota, the sweep entry that maps the connectionId, the connection); dying
# before each of them, and not at all.
@pytest.mark.parametrize("dies_at", range(1, 5))
async def test_a_connect_dying_before_any_request_leaves_nothing_the_sweep_or_a_disconnect_trips_on(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str], dies_at: int
) -> None:
    """Whatever request a connect dies before, a recorded connection is found by its connectionId (a frame, a
    $disconnect) and by the sweep; anything else is garbage the sweep drops (a sweep entry) or that expires
    (the connectionId map, which leads a frame or a $disconnect to no connection)."""
    client, _ = dynamodb
    await connect(store, clock, 2)
    a = Connection(app_id=APP, socket_id=sid(1), connected_at=clock(), connection_id="cid-1=")
    dead_from(client, dies_at)
    try:
        completed = await store.add_connection(a, 5)
    except StoreUnavailable:
        completed = False
    client.fault = None
    assert completed == (dies_at == 4)

    cold = DynamoDBChannelStore(store.table, client=client, clock=clock)  # the next Lambda: empty caches
    recorded = await cold.get_connection(APP, a.socket_id) is not None
    assert recorded == completed
    # A connect dying after it reserved its slot leaks the slot (docs/dynamodb.md "Limits").
    assert await cold.connection_count(APP) == (1 if dies_at == 1 else 2)
    found = await cold.socket_for_connection("cid-1=")
    assert found == (APP, a.socket_id) if recorded else found in (None, (APP, a.socket_id))
    if found is not None:  # a subscribe frame ($default), then $disconnect
        joined = await cold.subscribe(APP, a.socket_id, PUBLIC, None, 100)
        assert isinstance(joined, JoinResult)
        assert joined.joined == recorded
        assert (await cold.remove_connection(APP, a.socket_id) is not None) == recorded
    assert PUBLIC not in await cold.channels(APP)
    clock.advance(400)
    # The sweep finds b alive, and a's entry (left when the connect died before recording it) gone: dropped.
    assert await sweep(cold, {"cid-2="}) == ({a.socket_id} if dies_at == 3 else set())
    assert await cold.connection_count(APP) == (1 if dies_at in (1, 4) else 2)
    leftovers = [i for i in items(dynamodb) if "1.1" in i["pk"]["S"] + i["sk"]["S"] or "cid-1=" in i["sk"]["S"]]
    assert leftovers == []
    assert [c.socket_id for c in await cold.due_connections()] == []  # nothing came due since
    await cold.close()


# -- TTL ----------------------------------------------------------------------------------------------------


async def test_connection_items_carry_a_ttl_past_the_longest_connection(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    await connect(store, clock, 1)
    expiring = [item for item in items(dynamodb) if "ttl" in item]
    assert sorted(item["sk"]["S"] for item in expiring) == ["cid-1=", "conn"]  # the connection and its entry
    for ttl in (int(item["ttl"]["N"]) for item in expiring):
        assert clock() + 2 * 3600 < ttl <= clock() + 3 * 86400


async def test_an_expired_cache_item_still_in_the_table_is_ignored(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """DynamoDB deletes expired items lazily (moto never does): reads must check the expiry themselves."""
    channel = ChannelName("cache-news")
    await store.cache_put(APP, channel, b"frame", 30)
    clock.advance(29)
    cached = await store.cache_get(APP, channel)
    assert cached is not None
    assert cached.ttl == pytest.approx(1)
    clock.advance(2)
    assert await store.cache_get(APP, channel) is None
    assert any(item["sk"]["S"] == "#cache" for item in items(dynamodb))


# -- pagination ---------------------------------------------------------------------------------------------


async def test_sockets_follow_pages_past_one_megabyte(
    store: DynamoDBChannelStore, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """A Query returns at most 1 MB; a big channel needs several pages (moto pages like DynamoDB).

    Subscriber items are written directly, with connectionIds padded to 1 KB so 1,200 of them fill two pages.
    """
    client, table = dynamodb
    expected = [sid(n) for n in range(1200)]
    for start in range(0, len(expected), 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": f"app#{APP}#ch#{PUBLIC}"},
                        "sk": {"S": f"s#{s}"},
                        "sid": {"S": s},
                        "cid": {"S": f"{s}=".ljust(1000, "x")},
                    }
                }
            }
            for s in expected[start : start + 25]
        ]
        client.batch_write_item(RequestItems={table: requests})
    client.calls.clear()
    assert sorted(await store.sockets(APP, PUBLIC)) == sorted(expected)
    assert client.calls.count("query") >= 2


# -- removal that survives a crash ----------------------------------------------------------------------------


async def test_a_removal_that_died_half_way_is_finished_by_the_next_one(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """A Lambda can die between two requests; the connection keeps its claim until the lease runs out,
    then the next removal (the sweep, a 410) finishes the job with the effects not reported yet."""
    client, _ = dynamodb
    a, b = await connect(store, clock, 1), await connect(store, clock, 2)
    await join(store, a, PRESENCE, "u1")
    await join(store, b, PRESENCE, "u2")
    await join(store, a, PUBLIC)
    await store.sign_in(APP, a, UserId("u1"), "{}", ())

    transactions = 0

    def die_on_the_third_transaction(operation: str, kwargs: dict[str, Any]) -> Exception | None:
        nonlocal transactions
        if operation == "transact_write_items":
            transactions += 1
            if transactions >= 3:
                return backend.aws_error("InternalServerError", "TransactWriteItems", 500)
        return None

    client.fault = die_on_the_third_transaction
    with pytest.raises(StoreUnavailable):
        await store.remove_connection(APP, a)
    client.fault = None

    assert await store.remove_connection(APP, a) is None  # still claimed by the dead removal
    clock.advance(REMOVAL_LEASE_SECONDS + 1)
    finished = await store.remove_connection(APP, a)
    assert finished is not None
    assert finished.user_offline
    assert await store.get_connection(APP, a) is None
    assert dict(await store.members(APP, PRESENCE)) == {"u2": {"name": "u2"}}
    assert list(await store.sockets(APP, PRESENCE)) == [b]
    assert PUBLIC not in await store.channels(APP)
    assert await store.online(APP, [UserId("u1")]) == set()
    assert await store.connection_count(APP) == 1


def dead_from(client: backend.AtomicRequests, request: int) -> None:
    """From its ``request``-th request on (1 = the next one), the caller is dead: every request fails."""
    sent = 0

    def dead(operation: str, kwargs: dict[str, Any]) -> Exception | None:
        nonlocal sent
        sent += 1
        return backend.aws_error("InternalServerError", operation, 500) if sent >= request else None

    client.fault = dead


async def settled(client: backend.AtomicRequests) -> None:
    """Wait until the requests of a dead caller's other tasks (each fails at once) have all been made."""
    seen = -1
    while seen != len(client.calls):
        seen = len(client.calls)
        await asyncio.sleep(0.1)


# The removal below makes 15 requests; dying before each of them, and not at all.
@pytest.mark.parametrize("dies_at", range(1, 17))
async def test_a_removal_dying_before_any_request_leaves_what_the_next_one_finishes(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str], dies_at: int
) -> None:
    """Whatever request a removal dies before, the next removal (after the lease) and the sweep leave the
    other socket's state intact and nothing of the removed one but an expiring connectionId map entry."""
    client, _ = dynamodb
    a, b = await connect(store, clock, 1), await connect(store, clock, 2)
    await join(store, a, PRESENCE, "u1")
    await join(store, b, PRESENCE, "u2")
    await join(store, a, PUBLIC)
    await store.sign_in(APP, a, UserId("u1"), "{}", (UserId("u2"),))

    dead_from(client, dies_at)
    try:
        completed = await store.remove_connection(APP, a) is not None
    except StoreUnavailable:
        completed = False
        await settled(client)
    client.fault = None
    assert completed == (dies_at == 16)

    # After the lease the sweep finds the connection (still claimed) if it is still there; its removal finishes.
    clock.advance(REMOVAL_LEASE_SECONDS + 1)
    remaining = await store.get_connection(APP, a)
    due = {c.socket_id for c in await store.due_connections()}
    if remaining is not None:
        assert a in due
        assert await store.remove_connection(APP, a) is not None
    forgotten_by_the_dead = not completed and remaining is None  # it died after deleting the connection
    assert dict(await store.members(APP, PRESENCE)) == {"u2": {"name": "u2"}}
    assert list(await store.sockets(APP, PRESENCE)) == [b]
    assert (await store.channel_stats(APP, PRESENCE)).subscription_count == 1
    assert PUBLIC not in await store.channels(APP)
    assert await store.online(APP, [UserId("u1")]) == set()
    assert list(await store.watchers(APP, UserId("u2"))) == []
    # A removal dying between deleting the connection and releasing its slot leaks the slot (docs/dynamodb.md).
    assert await store.connection_count(APP) in ({1, 2} if forgotten_by_the_dead else {1})
    clock.advance(300)
    assert await sweep(store, {"cid-2="}) <= ({a} if forgotten_by_the_dead else set())  # drops a's entry
    leftovers = [i for i in items(dynamodb) if "1.1" in i["pk"]["S"] + i["sk"]["S"] or "cid-1=" in i["sk"]["S"]]
    assert leftovers == []


def metered(client: backend.AtomicRequests) -> Counter[str]:
    """Request units of every call from now on, counted by the emulator's meter (what bench/handler_cost reads)."""
    units: Counter[str] = Counter()

    def meter(operation: str, kwargs: dict[str, Any]) -> None:
        name = "".join(part.title() for part in operation.split("_"))  # transact_write_items -> TransactWriteItems
        units.update(dynamodb_units(name, kwargs))

    client.fault = meter
    return units


async def test_a_disconnect_from_one_private_channel_costs_eight_write_units(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """The claim (1), the subscriber item and the counter in one transaction (2 x 2), the connection (1), the
    quota (1), the sweep entry that maps the connectionId (1); the last subscriber's transaction also deletes
    the channel from the index (+2). Before the channel list moved onto the connection item: 9 and 11."""
    client, _ = dynamodb
    a, b = await connect(store, clock, 1), await connect(store, clock, 2)
    await join(store, a, PRIVATE)
    await join(store, b, PRIVATE)
    units = metered(client)
    assert await store.remove_connection(APP, a) is not None
    assert units["WRU"] == 8
    units.clear()
    departure = await store.remove_connection(APP, b)
    assert departure is not None
    assert departure.left[0].vacated
    assert units["WRU"] == 10


async def test_a_closing_connection_accepts_no_new_subscription(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    client, _ = dynamodb
    a = await connect(store, clock, 1)
    await join(store, a, PUBLIC)
    client.fault = lambda op, kw: (
        backend.aws_error("InternalServerError", "TransactWriteItems", 500) if op == "transact_write_items" else None
    )
    with pytest.raises(StoreUnavailable):
        await store.remove_connection(APP, a)  # claimed, then died before leaving anything
    client.fault = None
    result = await store.subscribe(APP, a, ChannelName("other"), None, 100)
    assert result == JoinResult(joined=False)
    assert not await store.sign_in(APP, a, UserId("u1"), "{}", ())


# -- the sweep of silent connections -----------------------------------------------------------------------


async def test_every_connection_comes_due_once_per_cycle_and_costs_no_write_while_it_lives(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """Runs a minute apart: each run reads the slots that came due since the last, so over one 300 s cycle
    every connection is returned exactly once, and nothing is written but the cursor (one item per run)."""
    client, _ = dynamodb
    sockets = {await connect(store, clock, n) for n in range(40)}
    clock.advance(30)
    assert {c.socket_id for c in await store.due_connections()} == sockets  # the first run: every slot
    units = metered(client)
    client.calls.clear()
    seen: list[SocketId] = []
    for _ in range(5):
        clock.advance(60)
        seen += [c.socket_id for c in await store.due_connections()]
    assert sorted(seen) == sorted(sockets)
    assert units["WRU"] == 5  # the cursor
    assert client.calls.count("query") == 60  # one small Query per slot and cycle


async def test_a_due_connection_carries_what_the_sweep_asks_api_gateway(
    store: DynamoDBChannelStore, clock: Clock
) -> None:
    connection = Connection(app_id=APP, socket_id=sid(1), connected_at=clock(), connection_id="cid-1=")
    assert await store.add_connection(connection, None)
    clock.advance(60)
    assert await store.due_connections() == [connection]


async def test_entries_younger_than_a_connect_are_not_judged(store: DynamoDBChannelStore, clock: Clock) -> None:
    """A connect writes its entry before its connection: the sweep must not remove what is still connecting."""
    young = await connect(store, clock, 1)
    clock.advance(5)
    assert await store.due_connections() == []
    clock.advance(300)
    assert [c.socket_id for c in await store.due_connections()] == [young]


async def test_the_sweep_removes_the_gone_and_keeps_the_open(store: DynamoDBChannelStore, clock: Clock) -> None:
    gone, alive = await connect(store, clock, 1), await connect(store, clock, 2)
    await join(store, gone, PRESENCE, "u1")
    await join(store, alive, PRESENCE, "u2")
    clock.advance(60)
    assert await sweep(store, {"cid-2="}) == {gone}
    assert dict(await store.members(APP, PRESENCE)) == {"u2": {"name": "u2"}}
    clock.advance(300)
    assert await sweep(store, {"cid-2="}) == set()
    assert await store.get_connection(APP, alive) is not None


# -- errors -------------------------------------------------------------------------------------------------


async def test_aws_errors_become_store_unavailable(aws: None) -> None:
    store = DynamoDBChannelStore("no-such-table", client=backend.client("dynamodb"))
    with pytest.raises(StoreUnavailable, match="ResourceNotFoundException"):
        await store.get_connection(APP, sid(1))
    with pytest.raises(StoreUnavailable):
        await store.subscribe(APP, sid(1), PUBLIC, None, 100)
    assert await store.check_health() is False
    await store.close()


async def test_busy_items_are_retried_until_the_transaction_goes_through(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    """DynamoDB cancels a transaction whose items another transaction holds; the store retries it."""
    client, _ = dynamodb
    a = await connect(store, clock, 1)
    refusals = 3

    def conflict_three_times(operation: str, kwargs: dict[str, Any]) -> Exception | None:
        nonlocal refusals
        if operation == "transact_write_items" and refusals > 0:
            refusals -= 1
            return backend.transaction_conflict(operation, kwargs)
        return None

    client.fault = conflict_three_times
    result = await store.subscribe(APP, a, PRESENCE, Member(UserId("u1"), None), 100)
    assert result == JoinResult(joined=True, occupied=True, member_added=True, subscription_count=1)
    assert refusals == 0


async def test_an_item_busy_for_too_long_is_store_unavailable(
    store: DynamoDBChannelStore, clock: Clock, dynamodb: tuple[backend.AtomicRequests, str]
) -> None:
    client, _ = dynamodb
    a = await connect(store, clock, 1)
    client.fault = lambda op, kw: backend.transaction_conflict(op, kw) if op == "transact_write_items" else None
    with pytest.raises(StoreUnavailable, match="busy"):
        await store.subscribe(APP, a, PUBLIC, None, 100)
    client.fault = None
    assert list(await store.sockets(APP, PUBLIC)) == []
