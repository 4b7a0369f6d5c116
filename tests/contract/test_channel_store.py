"""The ``ChannelStore`` contract (shared/store/base.py), run against every registered driver.

Each decision that must happen exactly once (occupied/vacated, member added/removed, online/offline,
connection quota) is checked from the results the store reports, and every removal is checked for
leftovers through the read methods: a ghost member or subscription fails here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

from shared.store.base import (
    ChannelStats,
    ChannelStore,
    Connection,
    JoinResult,
    LeaveResult,
    Member,
    PresenceFull,
    Subscription,
)
from shared.types import AppId, ChannelName, SocketId, UserId

APP = AppId("app-1")
OTHER_APP = AppId("app-2")
PUBLIC = ChannelName("my-channel")
PRESENCE = ChannelName("presence-room")
NO_LIMIT = 100


def sid(n: int) -> SocketId:
    return SocketId(f"{n}.{n}")


async def connect(store: ChannelStore, n: int, app: AppId = APP, max_connections: int | None = None) -> SocketId:
    socket_id = sid(n)
    assert await store.add_connection(
        Connection(app_id=app, socket_id=socket_id, connected_at=time.time()), max_connections
    )
    return socket_id


async def join(
    store: ChannelStore, socket_id: SocketId, channel: ChannelName, user: str | None = None, max_members: int = NO_LIMIT
) -> JoinResult:
    member = Member(user_id=UserId(user), user_info={"name": user}) if user is not None else None
    result = await store.subscribe(APP, socket_id, channel, member, max_members)
    assert isinstance(result, JoinResult)
    return result


async def assert_channel_empty(store: ChannelStore, channel: ChannelName, app: AppId = APP) -> None:
    assert list(await store.sockets(app, channel)) == []
    assert dict(await store.members(app, channel)) == {}
    assert channel not in await store.channels(app)
    assert (await store.channel_stats(app, channel)).subscription_count == 0


# -- connections and quota ------------------------------------------------------------------------------


async def test_connection_is_stored_and_read_back(channel_store: ChannelStore) -> None:
    connection = Connection(app_id=APP, socket_id=sid(1), connected_at=1234.5)
    assert await channel_store.add_connection(connection, None)
    assert await channel_store.get_connection(APP, sid(1)) == connection
    assert await channel_store.get_connection(APP, sid(2)) is None
    assert await channel_store.get_connection(OTHER_APP, sid(1)) is None
    assert await channel_store.connection_count(APP) == 1


async def test_connection_quota_refuses_and_stores_nothing(channel_store: ChannelStore) -> None:
    await connect(channel_store, 1, max_connections=2)
    await connect(channel_store, 2, max_connections=2)
    refused = Connection(app_id=APP, socket_id=sid(3), connected_at=time.time())
    assert not await channel_store.add_connection(refused, 2)
    assert await channel_store.get_connection(APP, sid(3)) is None
    assert await channel_store.connection_count(APP) == 2


async def test_connection_quota_frees_up_when_a_connection_leaves(channel_store: ChannelStore) -> None:
    await connect(channel_store, 1, max_connections=1)
    assert await channel_store.remove_connection(APP, sid(1)) is not None
    await connect(channel_store, 2, max_connections=1)
    assert await channel_store.connection_count(APP) == 1


async def test_connection_quota_is_per_app_and_none_is_unlimited(channel_store: ChannelStore) -> None:
    await connect(channel_store, 1, max_connections=1)
    await connect(channel_store, 2, app=OTHER_APP, max_connections=1)
    for n in range(3, 13):
        await connect(channel_store, n, app=OTHER_APP, max_connections=None)
    assert await channel_store.connection_count(APP) == 1
    assert await channel_store.connection_count(OTHER_APP) == 11


async def test_connection_quota_holds_under_concurrent_connects(channel_store: ChannelStore) -> None:
    attempts = [
        channel_store.add_connection(Connection(app_id=APP, socket_id=sid(n), connected_at=time.time()), 5)
        for n in range(20)
    ]
    accepted = await asyncio.gather(*attempts)
    assert sum(accepted) == 5
    assert await channel_store.connection_count(APP) == 5


# -- subscriptions: occupied / vacated ------------------------------------------------------------------


async def test_channel_occupied_once_and_vacated_once(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    assert await join(channel_store, a, PUBLIC) == JoinResult(joined=True, occupied=True, subscription_count=1)
    assert await join(channel_store, b, PUBLIC) == JoinResult(joined=True, occupied=False, subscription_count=2)
    assert await channel_store.unsubscribe(APP, a, PUBLIC) == LeaveResult(
        channel=PUBLIC, left=True, vacated=False, subscription_count=1
    )
    assert await channel_store.unsubscribe(APP, b, PUBLIC) == LeaveResult(
        channel=PUBLIC, left=True, vacated=True, subscription_count=0
    )
    await assert_channel_empty(channel_store, PUBLIC)


async def test_a_channels_changes_are_ordered_by_version_where_the_store_stamps_them(
    channel_store: ChannelStore,
) -> None:
    """``version`` orders a channel's subscription counts across cluster nodes (``JoinResult.version``): each
    join and leave that changed something is later than the one before, disconnects included; a store that
    does not stamp them (its sender keeps no node index) leaves every one 0."""
    a, b, c = [await connect(channel_store, n) for n in (1, 2, 3)]
    changes = [
        (await join(channel_store, a, PUBLIC)).version,
        (await join(channel_store, b, PUBLIC)).version,
        (await channel_store.unsubscribe(APP, a, PUBLIC)).version,
        (await join(channel_store, c, PUBLIC)).version,
    ]
    departure = await channel_store.remove_connection(APP, b)
    assert departure is not None
    changes += [left.version for left in departure.left]
    assert (await join(channel_store, c, PUBLIC)).version == 0  # a repeat changes nothing
    assert len(changes) == 5
    # Two changes in the same microsecond may share a version (a count as new as the newest is delivered).
    assert changes == [0] * 5 or (all(0 < x <= y for x, y in itertools.pairwise(changes)) and changes[0] < changes[-1])


async def test_channel_is_occupied_again_after_being_vacated(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await join(channel_store, a, PUBLIC)
    await channel_store.unsubscribe(APP, a, PUBLIC)
    assert (await join(channel_store, a, PUBLIC)).occupied


async def test_subscribing_twice_changes_nothing(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await join(channel_store, a, PUBLIC)
    again = await join(channel_store, a, PUBLIC)
    assert not again.joined
    assert not again.occupied
    assert list(await channel_store.sockets(APP, PUBLIC)) == [a]
    assert (await channel_store.channel_stats(APP, PUBLIC)).subscription_count == 1
    # One unsubscribe is enough: the second subscribe was not counted.
    assert (await channel_store.unsubscribe(APP, a, PUBLIC)).vacated


async def test_unsubscribe_when_not_subscribed_reports_left_false(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    assert await channel_store.unsubscribe(APP, a, PUBLIC) == LeaveResult(channel=PUBLIC, left=False)
    await join(channel_store, b, PUBLIC)
    result = await channel_store.unsubscribe(APP, a, PUBLIC)
    assert not result.left
    assert not result.vacated
    assert result.member_removed is None
    assert list(await channel_store.sockets(APP, PUBLIC)) == [b]


async def test_subscribe_of_an_unknown_socket_stores_nothing(channel_store: ChannelStore) -> None:
    """A subscribe racing a disconnect must not leave a subscription no disconnect will ever remove."""
    result = await channel_store.subscribe(APP, sid(99), PUBLIC, None, NO_LIMIT)
    assert isinstance(result, JoinResult)
    assert not result.joined
    await assert_channel_empty(channel_store, PUBLIC)


async def test_subscription_reports_the_presence_user(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await join(channel_store, a, PUBLIC)
    await join(channel_store, a, PRESENCE, "u1")
    assert await channel_store.subscription(APP, a, PUBLIC) == Subscription(user_id=None)
    assert await channel_store.subscription(APP, a, PRESENCE) == Subscription(user_id=UserId("u1"))
    assert await channel_store.subscription(APP, a, ChannelName("other")) is None
    assert await channel_store.subscription(APP, sid(2), PUBLIC) is None


async def test_subscriptions_are_per_app(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await connect(channel_store, 1, app=OTHER_APP)
    await join(channel_store, a, PUBLIC)
    assert list(await channel_store.sockets(OTHER_APP, PUBLIC)) == []
    assert await channel_store.channels(OTHER_APP) == {}
    result = await channel_store.subscribe(OTHER_APP, a, PUBLIC, None, NO_LIMIT)
    assert isinstance(result, JoinResult)
    assert result.occupied


async def test_sockets_lists_every_subscriber(channel_store: ChannelStore) -> None:
    sockets = [await connect(channel_store, n) for n in range(50)]
    for socket_id in sockets:
        await join(channel_store, socket_id, PUBLIC)
    assert sorted(await channel_store.sockets(APP, PUBLIC)) == sorted(sockets)


# -- presence -------------------------------------------------------------------------------------------


async def test_member_added_on_first_socket_and_removed_on_last(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    first = await join(channel_store, a, PRESENCE, "u1")
    assert first.member_added
    assert first.occupied
    second = await join(channel_store, b, PRESENCE, "u1")
    assert not second.member_added
    assert dict(await channel_store.members(APP, PRESENCE)) == {"u1": {"name": "u1"}}
    assert await channel_store.channel_stats(APP, PRESENCE) == ChannelStats(subscription_count=2, user_count=1)

    leave_a = await channel_store.unsubscribe(APP, a, PRESENCE)
    assert leave_a.left
    assert leave_a.member_removed is None
    assert not leave_a.vacated
    assert dict(await channel_store.members(APP, PRESENCE)) == {"u1": {"name": "u1"}}

    leave_b = await channel_store.unsubscribe(APP, b, PRESENCE)
    assert leave_b.member_removed == "u1"
    assert leave_b.vacated
    await assert_channel_empty(channel_store, PRESENCE)


async def test_presence_members_keep_user_info_as_json(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    info = {"name": "Zoë", "tags": [1, 2.5, None, True], "nested": {"x": "y"}}
    result = await channel_store.subscribe(APP, a, PRESENCE, Member(UserId("u1"), info), NO_LIMIT)
    assert isinstance(result, JoinResult)
    b = await connect(channel_store, 2)
    await channel_store.subscribe(APP, b, PRESENCE, Member(UserId("u2"), None), NO_LIMIT)
    members = await channel_store.members(APP, PRESENCE)
    assert json.loads(json.dumps(dict(members))) == {"u1": info, "u2": None}


async def test_presence_data_read_with_the_join_is_the_roster_after_it(channel_store: ChannelStore) -> None:
    """A store that hands back the roster with the join (``presence_data``) hands back exactly the members the
    join left, ids and hash in agreement, whatever characters the ids and infos hold."""
    odd = 'u "quoted" \\ back/slash Zoë 🎉'
    infos: dict[str, object] = {"u1": {"name": "Zoë", "n": [1, None]}, odd: None, "u3": "plain"}
    rosters = []
    for n, (user, info) in enumerate(infos.items()):
        socket = await connect(channel_store, n)
        result = await channel_store.subscribe(APP, socket, PRESENCE, Member(UserId(user), info), NO_LIMIT)
        assert isinstance(result, JoinResult)
        rosters.append(result.presence_data)
    again = await channel_store.subscribe(APP, await connect(channel_store, 9), PRESENCE, Member(UserId("u1"), {}), 9)
    assert isinstance(again, JoinResult) and not again.member_added
    rosters.append(again.presence_data)
    if all(roster is None for roster in rosters):
        return  # this store leaves the roster to ``members``
    expected = [dict(list(infos.items())[:k]) for k in (1, 2, 3, 3)]
    for roster, members in zip(rosters, expected, strict=True):
        assert roster is not None
        presence = json.loads(roster)["presence"]
        assert presence["hash"] == members
        assert presence["ids"] == list(presence["hash"])
        assert presence["count"] == len(members)
    assert dict(await channel_store.members(APP, PRESENCE)) == infos


async def test_presence_full_refuses_a_new_member_and_stores_nothing(channel_store: ChannelStore) -> None:
    sockets = [await connect(channel_store, n) for n in range(4)]
    await join(channel_store, sockets[0], PRESENCE, "u0", max_members=2)
    await join(channel_store, sockets[1], PRESENCE, "u1", max_members=2)
    result = await channel_store.subscribe(APP, sockets[2], PRESENCE, Member(UserId("u2"), None), 2)
    assert isinstance(result, PresenceFull)
    assert result.limit == 2
    assert await channel_store.subscription(APP, sockets[2], PRESENCE) is None
    assert set(await channel_store.members(APP, PRESENCE)) == {"u0", "u1"}
    assert (await channel_store.channel_stats(APP, PRESENCE)).subscription_count == 2
    # Removing the refused socket reports nothing for that channel.
    departure = await channel_store.remove_connection(APP, sockets[2])
    assert departure is not None
    assert all(leave.channel != PRESENCE or not leave.left for leave in departure.left)
    # An existing member may still open another socket at the limit.
    assert not (await join(channel_store, sockets[3], PRESENCE, "u1", max_members=2)).member_added


async def test_presence_limit_frees_up_when_a_member_leaves(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    await join(channel_store, a, PRESENCE, "u1", max_members=1)
    await channel_store.unsubscribe(APP, a, PRESENCE)
    assert (await join(channel_store, b, PRESENCE, "u2", max_members=1)).member_added


async def test_presence_limit_holds_under_concurrent_joins(channel_store: ChannelStore) -> None:
    sockets = [await connect(channel_store, n) for n in range(10)]
    results = await asyncio.gather(
        *(channel_store.subscribe(APP, s, PRESENCE, Member(UserId(f"u{i}"), None), 3) for i, s in enumerate(sockets))
    )
    assert sum(isinstance(r, JoinResult) and r.member_added for r in results) == 3
    assert sum(isinstance(r, PresenceFull) for r in results) == 7
    assert len(await channel_store.members(APP, PRESENCE)) == 3


async def test_member_added_exactly_once_under_concurrent_joins_of_one_user(channel_store: ChannelStore) -> None:
    sockets = [await connect(channel_store, n) for n in range(10)]
    results = await asyncio.gather(
        *(channel_store.subscribe(APP, s, PRESENCE, Member(UserId("u1"), None), NO_LIMIT) for s in sockets)
    )
    assert sum(isinstance(r, JoinResult) and r.member_added for r in results) == 1
    assert sum(isinstance(r, JoinResult) and r.occupied for r in results) == 1
    leaves = await asyncio.gather(*(channel_store.unsubscribe(APP, s, PRESENCE) for s in sockets))
    assert [leave.member_removed for leave in leaves].count(UserId("u1")) == 1
    assert sum(leave.vacated for leave in leaves) == 1
    await assert_channel_empty(channel_store, PRESENCE)


# -- removing a connection ------------------------------------------------------------------------------


async def test_remove_connection_removes_everything(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await channel_store.sign_in(APP, a, UserId("u1"), '{"id":"u1"}', (UserId("u2"),))
    await join(channel_store, a, PUBLIC)
    await join(channel_store, a, PRESENCE, "u1")
    departure = await channel_store.remove_connection(APP, a)
    assert departure is not None
    assert departure.connection.socket_id == a
    assert departure.connection.user_id == "u1"
    assert departure.user_offline
    assert {leave.channel: leave for leave in departure.left} == {
        PUBLIC: LeaveResult(channel=PUBLIC, left=True, vacated=True, subscription_count=0),
        PRESENCE: LeaveResult(
            channel=PRESENCE, left=True, vacated=True, member_removed=UserId("u1"), subscription_count=0
        ),
    }
    assert await channel_store.get_connection(APP, a) is None
    assert await channel_store.connection_count(APP) == 0
    await assert_channel_empty(channel_store, PUBLIC)
    await assert_channel_empty(channel_store, PRESENCE)
    assert await channel_store.subscription(APP, a, PRESENCE) is None
    assert list(await channel_store.user_sockets(APP, UserId("u1"))) == []
    assert list(await channel_store.watchers(APP, UserId("u2"))) == []
    assert await channel_store.online(APP, [UserId("u1")]) == set()


async def test_remove_connection_is_idempotent(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await join(channel_store, a, PRESENCE, "u1")
    assert await channel_store.remove_connection(APP, a) is not None
    assert await channel_store.remove_connection(APP, a) is None
    assert await channel_store.remove_connection(APP, sid(42)) is None
    await assert_channel_empty(channel_store, PRESENCE)


async def test_concurrent_removals_report_the_departure_once(channel_store: ChannelStore) -> None:
    """Lambda may deliver ``$disconnect`` twice while a 410 prunes the same socket."""
    a = await connect(channel_store, 1)
    await join(channel_store, a, PRESENCE, "u1")
    departures = await asyncio.gather(*(channel_store.remove_connection(APP, a) for _ in range(5)))
    assert sum(d is not None for d in departures) == 1
    await assert_channel_empty(channel_store, PRESENCE)


async def test_remove_connection_keeps_a_member_with_another_socket(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    await join(channel_store, a, PRESENCE, "u1")
    await join(channel_store, b, PRESENCE, "u1")
    departure = await channel_store.remove_connection(APP, a)
    assert departure is not None
    assert departure.left == (LeaveResult(channel=PRESENCE, left=True, subscription_count=1),)
    assert dict(await channel_store.members(APP, PRESENCE)) == {"u1": {"name": "u1"}}
    assert list(await channel_store.sockets(APP, PRESENCE)) == [b]


async def test_remove_connection_does_not_report_channels_already_left(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    await join(channel_store, a, PUBLIC)
    await join(channel_store, b, PUBLIC)
    await channel_store.unsubscribe(APP, a, PUBLIC)
    departure = await channel_store.remove_connection(APP, a)
    assert departure is not None
    assert [leave for leave in departure.left if leave.left] == []
    assert list(await channel_store.sockets(APP, PUBLIC)) == [b]


# -- users, sign-in and watchers ------------------------------------------------------------------------


async def test_sign_in_first_socket_is_online_and_last_socket_offline(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    user = UserId("u1")
    assert await channel_store.sign_in(APP, a, user, '{"id":"u1"}', ())
    assert not await channel_store.sign_in(APP, b, user, '{"id":"u1"}', ())
    assert sorted(await channel_store.user_sockets(APP, user)) == sorted([a, b])
    assert await channel_store.online(APP, [user, UserId("u2")]) == {user}

    first = await channel_store.remove_connection(APP, a)
    assert first is not None
    assert not first.user_offline
    assert await channel_store.online(APP, [user]) == {user}
    last = await channel_store.remove_connection(APP, b)
    assert last is not None
    assert last.user_offline
    assert await channel_store.online(APP, [user]) == set()
    assert list(await channel_store.user_sockets(APP, user)) == []


async def test_sign_in_is_recorded_on_the_connection(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    watchlist = (UserId("u2"), UserId("u3"))
    await channel_store.sign_in(APP, a, UserId("u1"), '{"id":"u1","watchlist":["u2","u3"]}', watchlist)
    connection = await channel_store.get_connection(APP, a)
    assert connection is not None
    assert connection.user_id == "u1"
    assert connection.user_data == '{"id":"u1","watchlist":["u2","u3"]}'
    assert tuple(connection.watchlist) == watchlist


async def test_sign_in_of_an_unknown_socket_stores_nothing(channel_store: ChannelStore) -> None:
    assert not await channel_store.sign_in(APP, sid(9), UserId("u1"), '{"id":"u1"}', (UserId("u2"),))
    assert list(await channel_store.user_sockets(APP, UserId("u1"))) == []
    assert list(await channel_store.watchers(APP, UserId("u2"))) == []
    assert await channel_store.online(APP, [UserId("u1")]) == set()


async def test_online_is_exactly_once_under_concurrent_sign_ins(channel_store: ChannelStore) -> None:
    sockets = [await connect(channel_store, n) for n in range(8)]
    firsts = await asyncio.gather(*(channel_store.sign_in(APP, s, UserId("u1"), "{}", ()) for s in sockets))
    assert sum(firsts) == 1
    departures = await asyncio.gather(*(channel_store.remove_connection(APP, s) for s in sockets))
    assert sum(d is not None and d.user_offline for d in departures) == 1


async def test_watchers_are_the_sockets_watching_a_user(channel_store: ChannelStore) -> None:
    a, b, c = await connect(channel_store, 1), await connect(channel_store, 2), await connect(channel_store, 3)
    await channel_store.sign_in(APP, a, UserId("alice"), "{}", (UserId("bob"), UserId("carol")))
    await channel_store.sign_in(APP, b, UserId("dave"), "{}", (UserId("bob"),))
    await channel_store.sign_in(APP, c, UserId("erin"), "{}", ())
    assert sorted(await channel_store.watchers(APP, UserId("bob"))) == sorted([a, b])
    assert list(await channel_store.watchers(APP, UserId("carol"))) == [a]
    assert list(await channel_store.watchers(APP, UserId("alice"))) == []
    await channel_store.remove_connection(APP, a)
    assert list(await channel_store.watchers(APP, UserId("bob"))) == [b]
    assert list(await channel_store.watchers(APP, UserId("carol"))) == []


async def test_users_are_per_app(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await connect(channel_store, 1, app=OTHER_APP)
    await channel_store.sign_in(APP, a, UserId("u1"), "{}", (UserId("u2"),))
    assert await channel_store.online(OTHER_APP, [UserId("u1")]) == set()
    assert list(await channel_store.user_sockets(OTHER_APP, UserId("u1"))) == []
    assert list(await channel_store.watchers(OTHER_APP, UserId("u2"))) == []


# -- channel listings and stats -------------------------------------------------------------------------


async def test_channels_lists_occupied_channels_with_stats(channel_store: ChannelStore) -> None:
    a, b = await connect(channel_store, 1), await connect(channel_store, 2)
    await join(channel_store, a, ChannelName("news"))
    await join(channel_store, b, ChannelName("news"))
    await join(channel_store, a, ChannelName("private-x"))
    await join(channel_store, a, PRESENCE, "u1")
    await join(channel_store, b, PRESENCE, "u2")
    await join(channel_store, b, ChannelName("left-already"))
    await channel_store.unsubscribe(APP, b, ChannelName("left-already"))

    assert dict(await channel_store.channels(APP)) == {
        "news": ChannelStats(subscription_count=2, user_count=None),
        "private-x": ChannelStats(subscription_count=1, user_count=None),
        PRESENCE: ChannelStats(subscription_count=2, user_count=2),
    }
    assert set(await channel_store.channels(APP, "presence-")) == {PRESENCE}
    assert set(await channel_store.channels(APP, "private-")) == {"private-x"}
    assert dict(await channel_store.channels(APP, "nothing-")) == {}


async def test_user_count_only_for_presence_channels(channel_store: ChannelStore) -> None:
    a = await connect(channel_store, 1)
    await join(channel_store, a, PUBLIC)
    assert await channel_store.channel_stats(APP, PUBLIC) == ChannelStats(subscription_count=1, user_count=None)
    assert await channel_store.channel_stats(APP, ChannelName("empty")) == ChannelStats(0, None)
    assert (await channel_store.channel_stats(APP, ChannelName("presence-empty"))).user_count in (0, None)
    assert (await channel_store.channel_stats(APP, ChannelName("presence-empty"))).subscription_count == 0


# -- cache channels -------------------------------------------------------------------------------------


async def test_cache_put_then_get_with_remaining_ttl(channel_store: ChannelStore) -> None:
    channel = ChannelName("cache-news")
    assert await channel_store.cache_get(APP, channel) is None
    await channel_store.cache_put(APP, channel, b'{"event":"e","channel":"cache-news"}', 60)
    cached = await channel_store.cache_get(APP, channel)
    assert cached is not None
    assert cached.frame == b'{"event":"e","channel":"cache-news"}'
    assert 55 < cached.ttl <= 60
    assert await channel_store.cache_get(OTHER_APP, channel) is None


async def test_cache_put_replaces_the_last_event(channel_store: ChannelStore) -> None:
    channel = ChannelName("cache-news")
    await channel_store.cache_put(APP, channel, b"first", 60)
    await channel_store.cache_put(APP, channel, b"second", 60)
    cached = await channel_store.cache_get(APP, channel)
    assert cached is not None
    assert cached.frame == b"second"


async def test_cached_event_expires_after_its_ttl(channel_store: ChannelStore) -> None:
    channel = ChannelName("cache-news")
    started = time.monotonic()
    await channel_store.cache_put(APP, channel, b"event", 2)
    stored = time.monotonic()  # the TTL runs from some moment between started and stored
    cached = await channel_store.cache_get(APP, channel)
    # Judged by the clock: on a loaded machine the put and the read can take longer than the TTL themselves.
    assert cached is not None or time.monotonic() - started >= 2
    await asyncio.sleep(max(0.0, stored + 2.3 - time.monotonic()))
    assert await channel_store.cache_get(APP, channel) is None


# -- health ---------------------------------------------------------------------------------------------


async def test_check_health(channel_store: ChannelStore) -> None:
    assert await channel_store.check_health() is True
