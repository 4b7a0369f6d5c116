"""Many Lambdas at once on one presence channel: every transition is reported exactly once.

Sockets of four users subscribe, unsubscribe, re-subscribe and disconnect (twice, like a repeated
``$disconnect``) all at the same time, including several operations on the same socket at once. Every
reported decision goes into a ledger; after each round the ledger must match the store: a user is a member
exactly when member_added minus member_removed is 1, the channel is occupied exactly when occupied minus
vacated is 1, and the counters agree with the items. At the end everyone has left and the table is empty:
no ghost member, no orphan item. The same runs again with DynamoDB refusing 30 % of the transactions as
conflicting (what it does when another transaction holds an item).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.store.base import ChannelStats, Connection, Departure, JoinResult, LeaveResult, Member, PresenceFull
from shared.store.dynamodb import DynamoDBChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.aws import backend
from tests.aws.conftest import Clock

APP = AppId("app-1")
ROOM = ChannelName("presence-room")
USERS = [UserId(f"u{n}") for n in range(4)]
SOCKETS_PER_USER = 3


@dataclass
class Ledger:
    """Every transition the store reported, counted."""

    occupied: int = 0
    vacated: int = 0
    added: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)

    def joined(self, result: JoinResult | PresenceFull, user: UserId) -> None:
        assert isinstance(result, JoinResult)
        self.occupied += result.occupied
        self.added[user] += result.member_added

    def left(self, result: LeaveResult) -> None:
        if result.channel == ROOM:
            self.vacated += result.vacated
            if result.member_removed is not None:
                self.removed[result.member_removed] += 1

    def departed(self, departure: Departure | None) -> None:
        for leave in departure.left if departure is not None else ():
            self.left(leave)


@dataclass
class Room:
    store: DynamoDBChannelStore
    ledger: Ledger = field(default_factory=Ledger)
    user_of: dict[SocketId, UserId] = field(default_factory=dict)
    next_socket: int = 0

    async def connect(self, user: UserId) -> SocketId:
        self.next_socket += 1
        socket_id = SocketId(f"{self.next_socket}.{self.next_socket}")
        connection = Connection(app_id=APP, socket_id=socket_id, connected_at=0.0, connection_id=f"c{socket_id}=")
        assert await self.store.add_connection(connection, None)
        self.user_of[socket_id] = user
        return socket_id

    async def join(self, socket_id: SocketId) -> None:
        user = self.user_of[socket_id]
        self.ledger.joined(await self.store.subscribe(APP, socket_id, ROOM, Member(user, {"id": user}), 100), user)

    async def leave(self, socket_id: SocketId) -> None:
        self.ledger.left(await self.store.unsubscribe(APP, socket_id, ROOM))

    async def drop(self, socket_id: SocketId) -> None:
        self.ledger.departed(await self.store.remove_connection(APP, socket_id))
        self.user_of.pop(socket_id, None)

    async def check(self) -> None:
        """The ledger and the store tell the same story."""
        store = self.store
        sockets = set(await store.sockets(APP, ROOM))
        members = dict(await store.members(APP, ROOM))
        subscriptions = {s: await store.subscription(APP, s, ROOM) for s in self.user_of}
        assert {s for s, sub in subscriptions.items() if sub is not None} == sockets
        assert set(members) == {self.user_of[s] for s in sockets}
        assert await store.channel_stats(APP, ROOM) == ChannelStats(
            subscription_count=len(sockets), user_count=len(members)
        )
        assert (ROOM in await store.channels(APP)) == bool(sockets)
        for user in USERS:
            assert self.ledger.added[user] - self.ledger.removed[user] == (1 if user in members else 0), user
        assert self.ledger.occupied - self.ledger.vacated == (1 if sockets else 0)


async def at_once(*calls: Awaitable[Any]) -> None:
    await asyncio.gather(*calls)


def chaos(room: Room, socket_id: SocketId, rng: random.Random) -> list[Awaitable[Any]]:
    """One socket's share of a chaotic round; the calls of one socket race each other too."""

    async def rejoin() -> None:
        await room.leave(socket_id)
        await room.join(socket_id)

    moves: list[Callable[[], list[Awaitable[Any]]]] = [
        lambda: [room.leave(socket_id)],
        lambda: [room.leave(socket_id), room.join(socket_id)],  # unsubscribe and subscribe frames at once
        lambda: [room.join(socket_id), room.join(socket_id)],
        lambda: [room.drop(socket_id), room.drop(socket_id), room.join(socket_id)],  # $disconnect twice + a frame
        lambda: [room.drop(socket_id), room.leave(socket_id)],  # $disconnect and an unsubscribe frame at once
        lambda: [rejoin()],
        lambda: [rejoin(), room.leave(socket_id)],
    ]
    return rng.choice(moves)()


@pytest.mark.parametrize("conflicts", [pytest.param(False, id="calm"), pytest.param(True, id="conflicting")])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_presence_transitions_are_reported_exactly_once_under_churn(
    dynamodb: tuple[backend.AtomicRequests, str], seed: int, conflicts: bool
) -> None:
    client, table = dynamodb
    rng = random.Random(seed)
    if conflicts:
        refuse = random.Random(seed + 100)
        client.fault = lambda op, kw: (
            backend.transaction_conflict(op, kw) if op == "transact_write_items" and refuse.random() < 0.3 else None
        )
    room = Room(DynamoDBChannelStore(table, client=client, max_workers=16))

    # Everyone joins at once: one occupied, one member_added per user.
    sockets = [await room.connect(user) for user in USERS for _ in range(SOCKETS_PER_USER)]
    await at_once(*(room.join(s) for s in sockets))
    assert room.ledger.occupied == 1
    assert room.ledger.added == Counter(USERS)
    await room.check()

    # Chaos: leaves, joins, duplicate disconnects, all racing, twice.
    for _ in range(2):
        await at_once(*(call for s in list(room.user_of) for call in chaos(room, s, rng)))
        await room.check()
        # Users who lost every socket come back with a new one, all at the same time.
        present = set(room.user_of.values())
        fresh = [await room.connect(user) for user in USERS if user not in present]
        await at_once(*(room.join(s) for s in fresh))
        await room.check()

    # Everyone disconnects at once, each $disconnect delivered twice.
    await at_once(*(room.drop(s) for s in list(room.user_of) for _ in range(2)))
    await room.check()
    assert room.ledger.occupied == room.ledger.vacated
    assert room.ledger.added == room.ledger.removed
    client.fault = None
    leftovers = client.scan(TableName=table, ConsistentRead=True)["Items"]
    assert [(item["sk"]["S"], item["n"]["N"]) for item in leftovers] == [("#connections", "0")]
    await room.store.close()


QUOTA = 10


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_quota_holds_while_connects_race_disconnects(
    dynamodb: tuple[backend.AtomicRequests, str], seed: int
) -> None:
    """An app two below its quota: one socket added three times at once (a retried connect) holds at most one
    slot, while 20 new connects race for the others and 5 disconnects (each delivered twice), with DynamoDB
    refusing 30 % of the single-item writes as conflicting. The count ends equal to the connections recorded,
    never above the quota; every accepted connect was recorded with its sweep entry and connectionId map, and
    the refused ones left nothing behind."""
    client, table = dynamodb
    rng = random.Random(seed)
    clock = Clock()
    store = DynamoDBChannelStore(table, client=client, clock=clock, max_workers=16)

    def connection(n: int) -> Connection:
        return Connection(app_id=APP, socket_id=SocketId(f"{n}.{n}"), connected_at=clock(), connection_id=f"c{n}=")

    for n in range(1, QUOTA - 1):
        assert await store.add_connection(connection(n), QUOTA)
    refuse = random.Random(seed + 100)
    client.fault = lambda op, kw: (
        backend.aws_error("TransactionConflictException", op)
        if op in ("update_item", "put_item", "delete_item") and refuse.random() < 0.3
        else None
    )
    new = [99] * 3 + list(range(QUOTA + 1, QUOTA + 21))
    calls: list[Awaitable[Any]] = [store.add_connection(connection(n), QUOTA) for n in new]
    calls += [store.remove_connection(APP, SocketId(f"{n}.{n}")) for n in range(1, 6) for _ in range(2)]
    order = [0, 1, 2, *rng.sample(range(3, len(calls)), len(calls) - 3)]  # the repeated socket asks first
    results = dict(zip(order, await asyncio.gather(*(calls[i] for i in order)), strict=True))
    client.fault = None

    accepted = {SocketId(f"{n}.{n}") for i, n in enumerate(new) if results[i]}
    assert sum(results[i] is not None for i in range(len(new), len(calls))) == 5  # each removal reported once
    recorded = {SocketId(i["sid"]["S"]) for i in client.scan(TableName=table)["Items"] if i["sk"]["S"] == "conn"}
    assert recorded == accepted | {SocketId(f"{n}.{n}") for n in range(6, QUOTA - 1)}
    assert await store.connection_count(APP) == len(recorded) <= QUOTA
    cold = DynamoDBChannelStore(table, client=client, clock=clock)  # another container: empty caches
    for socket_id in recorded:
        assert await cold.socket_for_connection(f"c{socket_id.split('.')[0]}=") == (APP, socket_id)
    clock.advance(400)
    assert {c.socket_id for c in await cold.due_connections()} == recorded
    for socket_id in recorded:
        assert await cold.remove_connection(APP, socket_id) is not None
    leftovers = client.scan(TableName=table, ConsistentRead=True)["Items"]
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in leftovers) == [
        (f"app#{APP}", "#connections"),
        ("sweep", "cursor"),
    ]
    assert await cold.connection_count(APP) == 0
    await store.close()
    await cold.close()
