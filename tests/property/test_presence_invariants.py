"""Random subscribe / unsubscribe / disconnect / vanish sequences on presence channels leave no ghosts.

The engine runs for real over the memory store and the real ``LocalSender``. After every step the store
must agree with a plain model of who is subscribed where, and every live client's own view of each
presence channel (subscription_succeeded + member_added - member_removed, as pusher-js keeps it) must
equal the store's member list. A socket that "vanishes" (its transport disappears without a disconnect,
like a 410 Gone on AWS) may be pruned whenever a broadcast finds it; from then on it must hold nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.settings import AppConfig
from shared.types import AppId, ChannelName, SocketId
from tests.unit.engine_harness import Client, Harness, decode_data

APP = AppConfig(
    id=AppId("prop"),
    key="prop-key",
    secret="prop-secret",
    enable_user_authentication=True,
    enable_subscription_count=True,
    max_presence_members_per_channel=3,
)
SOCKETS = 5
USERS = ["u0", "u1", "u2", "u3"]  # one more than the member limit, so PresenceFull happens
CHANNELS = ["presence-a", "presence-b", "presence-cache-c"]

socket_index = st.integers(0, SOCKETS - 1)
op = st.one_of(
    st.tuples(st.just("subscribe"), socket_index, st.sampled_from(CHANNELS), st.sampled_from(USERS)),
    st.tuples(st.just("unsubscribe"), socket_index, st.sampled_from(CHANNELS)),
    st.tuples(st.just("disconnect"), socket_index),
    st.tuples(st.just("vanish"), socket_index),
    st.tuples(st.just("connect"), socket_index),
)


@dataclass
class Slot:
    """One socket position in the sequence; it may be reconnected as a new socket after a disconnect."""

    client: Client | None = None
    vanished: bool = False
    subs: dict[str, str] = field(default_factory=dict)  # channel -> user the socket joined as


def client_view(client: Client, channel: str) -> set[str] | None:
    """The member set a pusher-js client would hold for ``channel``, from the frames it received."""
    members: set[str] | None = None
    for frame in client.frames:
        if frame.get("channel") != channel:
            continue
        data: Any = decode_data(frame)
        if frame["event"] == "pusher_internal:subscription_succeeded":
            members = set(data["presence"]["ids"])
        elif frame["event"] == "pusher_internal:member_added" and members is not None:
            members.add(data["user_id"])
        elif frame["event"] == "pusher_internal:member_removed" and members is not None:
            members.discard(data["user_id"])
    return members


async def check_invariants(harness: Harness, slots: list[Slot]) -> None:
    store = harness.store
    # A vanished socket the engine pruned is gone for good: the model forgets it.
    for slot in slots:
        pruned = slot.client is not None and await store.get_connection(APP.id, slot.client.socket_id) is None
        if slot.vanished and pruned:
            slot.client, slot.vanished, slot.subs = None, False, {}
    live = [s for s in slots if s.client is not None]
    assert await store.connection_count(APP.id) == len(live)
    for channel in CHANNELS:
        expected_sockets = {s.client.socket_id for s in live if s.client is not None and channel in s.subs}
        expected_members = {s.subs[channel] for s in live if channel in s.subs}
        assert set(await store.sockets(APP.id, ChannelName(channel))) == expected_sockets
        assert set(await store.members(APP.id, ChannelName(channel))) == expected_members
        stats = await store.channel_stats(APP.id, ChannelName(channel))
        assert stats.subscription_count == len(expected_sockets)
        assert (stats.user_count or 0) == len(expected_members)
        assert (channel in await store.channels(APP.id)) == bool(expected_sockets)
        for slot in live:
            assert slot.client is not None
            if channel in slot.subs and not slot.vanished:
                assert client_view(slot.client, channel) == expected_members, f"client view of {channel}"


async def run(ops: list[tuple[Any, ...]]) -> None:
    harness = Harness(APP)
    slots = [Slot() for _ in range(SOCKETS)]
    for step in ops:
        kind, index = step[0], step[1]
        slot = slots[index]
        client = slot.client
        if kind == "connect" and client is None:
            slot.client = await harness.connect(APP.key)
        elif kind == "subscribe" and client is not None and not slot.vanished:
            channel, user = step[2], step[3]
            before = len(client.frames)
            await client.join(channel, user)
            answers = [f["event"] for f in client.frames[before:]]
            if "pusher_internal:subscription_succeeded" in answers:
                assert channel not in slot.subs
                slot.subs[channel] = user
            else:
                assert "pusher:error" in answers
        elif kind == "unsubscribe" and client is not None and not slot.vanished:
            await client.unsubscribe(step[2])
            slot.subs.pop(step[2], None)
        elif kind == "disconnect" and client is not None:
            # Twice: Lambda may deliver $disconnect twice; the second must change nothing.
            await client.disconnect()
            await harness.engine.disconnect(APP, client.socket_id)
            slot.client, slot.vanished, slot.subs = None, False, {}
        elif kind == "vanish" and client is not None and not slot.vanished:
            harness.sender.unregister(client.socket_id)
            slot.vanished = True
        await check_invariants(harness, slots)

    # Every socket goes away in the end ($disconnect arrives late for the vanished ones).
    for slot in slots:
        if slot.client is not None:
            await harness.engine.disconnect(APP, slot.client.socket_id)
    assert await harness.store.connection_count(APP.id) == 0
    assert dict(await harness.store.channels(APP.id)) == {}
    for channel in CHANNELS:
        assert dict(await harness.store.members(APP.id, ChannelName(channel))) == {}
    for n in range(1, 200):
        assert await harness.store.get_connection(APP.id, SocketId(f"{n}.{n}")) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=40))
def test_random_presence_sequences_leave_no_ghosts(ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(run(ops))
