"""The protocol engine (shared/engine) over the memory store, the real ``LocalSender`` and recording sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.auth.signatures import sign_channel, sign_user
from shared.errors import PusherError, StoreUnavailable
from shared.settings import AppConfig, RateLimit, WebhookConfig, WebhookFilter
from shared.store.memory import MemoryChannelStore
from shared.types import AppId, ChannelName, SocketId, UserId
from tests.unit.engine_harness import Client, Harness, decode_data

HOOK = WebhookConfig(url="http://127.0.0.1:9/hook")

FULL = AppConfig(
    id=AppId("full"),
    key="full-key",
    secret="full-secret",
    enable_client_messages=True,
    enable_user_authentication=True,
    enable_watchlist_events=True,
    enable_subscription_count=True,
    max_client_events_per_second=3,
    max_presence_members_per_channel=3,
    webhooks=(HOOK,),
)
PLAIN = AppConfig(id=AppId("plain"), key="plain-key", secret="plain-secret")
DISABLED = AppConfig(id=AppId("off"), key="off-key", secret="off-secret", enabled=False)
QUOTA = AppConfig(id=AppId("quota"), key="quota-key", secret="quota-secret", max_connections=2)
ORIGINS = AppConfig(
    id=AppId("origins"),
    key="origins-key",
    secret="origins-secret",
    allowed_origins=("https://app.example.com", "https://*.example.org"),
)


@pytest.fixture
def harness() -> Harness:
    return Harness(FULL, PLAIN, DISABLED, QUOTA, ORIGINS)


async def full(harness: Harness) -> Client:
    return await harness.connect(FULL.key)


def only(frames: list[dict[str, Any]], event: str) -> dict[str, Any]:
    matching = [f for f in frames if f["event"] == event]
    assert len(matching) == 1, f"expected one {event}, got {[f['event'] for f in frames]}"
    return matching[0]


# -- connecting -----------------------------------------------------------------------------------------


async def test_connection_established_first_with_numeric_socket_id(harness: Harness) -> None:
    client = await full(harness)
    welcome = client.frames[0]
    assert welcome["event"] == "pusher:connection_established"
    assert decode_data(welcome) == {"socket_id": client.socket_id, "activity_timeout": 120}
    assert await harness.store.get_connection(FULL.id, client.socket_id) is not None


def test_minted_socket_ids_match_what_server_sdks_accept() -> None:
    import re

    from shared.engine.core import mint_socket_id

    ids = {mint_socket_id() for _ in range(200)}
    assert all(re.fullmatch(r"\d+\.\d+", s) for s in ids)
    assert len(ids) == 200


@pytest.mark.parametrize(
    ("key", "protocol", "origin", "code"),
    [
        pytest.param("nope", "7", None, 4001, id="4001-unknown-key"),
        pytest.param(DISABLED.key, "7", None, 4003, id="4003-disabled-app"),
        pytest.param(FULL.key, "abc", None, 4006, id="4006-invalid-version"),
        pytest.param(FULL.key, "7.1", None, 4006, id="4006-dotted-version"),
        pytest.param(FULL.key, "4", None, 4007, id="4007-too-old"),
        pytest.param(FULL.key, "8", None, 4007, id="4007-too-new"),
        pytest.param(FULL.key, None, None, 4008, id="4008-no-protocol"),
        pytest.param(FULL.key, "", None, 4008, id="4008-empty-protocol"),
        pytest.param(ORIGINS.key, "7", "https://evil.example.com", 4009, id="4009-origin-refused"),
        pytest.param(ORIGINS.key, "7", None, 4009, id="4009-origin-missing"),
        pytest.param(ORIGINS.key, "7", "https://example.org", 4009, id="4009-wildcard-needs-subdomain"),
    ],
)
async def test_connect_refusals(
    harness: Harness, key: str, protocol: str | None, origin: str | None, code: int
) -> None:
    with pytest.raises(PusherError) as caught:
        await harness.connect(key, protocol, origin)
    assert caught.value.code == code
    assert caught.value.close
    assert await harness.store.connection_count(FULL.id) == 0


@pytest.mark.parametrize(
    "origin", [pytest.param("https://app.example.com", id="exact"), pytest.param("https://a.example.org", id="glob")]
)
async def test_allowed_origins(harness: Harness, origin: str) -> None:
    client = await harness.connect(ORIGINS.key, "7", origin)
    assert client.events() == ["pusher:connection_established"]


async def test_4004_over_connection_quota_and_room_again_after_a_disconnect(harness: Harness) -> None:
    first = await harness.connect(QUOTA.key)
    await harness.connect(QUOTA.key)
    with pytest.raises(PusherError) as caught:
        await harness.connect(QUOTA.key)
    assert caught.value.code == 4004
    assert await harness.store.connection_count(QUOTA.id) == 2
    await first.disconnect()
    await harness.connect(QUOTA.key)


async def test_4100_when_one_address_opens_more_connections_than_its_limit() -> None:
    """The per-IP limit both edges apply (the local server's socket address, ``$connect``'s client IP)."""
    limited = Harness(PLAIN, connections_per_ip=RateLimit(max_requests=2, window_seconds=60))
    await limited.connect(PLAIN.key, address="10.0.0.1")
    await limited.connect(PLAIN.key, address="10.0.0.1")
    with pytest.raises(PusherError) as caught:
        await limited.connect(PLAIN.key, address="10.0.0.1")
    assert (caught.value.code, caught.value.message) == (4100, "Too many connections from this address")
    await limited.connect(PLAIN.key, address="10.0.0.2")
    assert await limited.store.connection_count(PLAIN.id) == 3


async def test_a_binary_frame_gets_a_pusher_error_and_the_connection_stays(harness: Harness) -> None:
    client = await full(harness)
    client.new()
    await harness.engine.handle_binary(FULL, client.socket_id)
    assert client.errors() == [{"code": None, "message": "Binary frames are not supported"}]
    await client.send("pusher:ping", {})
    assert client.new()[-1]["event"] == "pusher:pong"


async def test_ping_is_answered_with_pong(harness: Harness) -> None:
    client = await full(harness)
    client.new()
    await client.send("pusher:ping", {})
    assert client.new() == [{"event": "pusher:pong", "data": "{}"}]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not json", id="bad-json"),
        pytest.param("[]", id="array"),
        pytest.param('{"event":"pusher:unknown"}', id="unknown-pusher-event"),
        pytest.param('{"event":"whatever"}', id="unknown-event"),
        pytest.param('{"event":"pusher:subscribe","data":"nope"}', id="subscribe-data-not-object"),
    ],
)
async def test_bad_frames_get_pusher_error_and_keep_the_connection(harness: Harness, raw: str) -> None:
    client = await full(harness)
    client.new()
    await client.send_raw(raw)
    assert [f["event"] for f in client.new()] == ["pusher:error"]
    assert client.errors()[0]["code"] is None
    assert client.transport.closed is None


# -- subscribing ----------------------------------------------------------------------------------------


async def test_public_subscription_succeeds(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    client.new()
    await client.subscribe("my-channel")
    assert client.new() == [{"event": "pusher_internal:subscription_succeeded", "channel": "my-channel", "data": "{}"}]
    assert list(await harness.store.sockets(PLAIN.id, ChannelName("my-channel"))) == [client.socket_id]


@pytest.mark.parametrize("channel", ["private-chat", "private-encrypted-chat", "private-cache-chat"])
async def test_private_and_encrypted_subscription_with_good_auth(harness: Harness, channel: str) -> None:
    client = await harness.connect(PLAIN.key)
    await client.join(channel)
    assert client.of("pusher_internal:subscription_succeeded")[0]["channel"] == channel
    assert client.errors() == []


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="missing"),
        pytest.param("plain-key:" + "0" * 64, id="wrong-signature"),
        pytest.param("other-key:{sig}", id="wrong-key"),
        pytest.param("plain-key:{other_socket_sig}", id="signed-for-another-socket"),
        pytest.param(42, id="not-a-string"),
    ],
)
@pytest.mark.parametrize("channel", ["private-chat", "private-encrypted-chat", "presence-room"])
async def test_subscription_with_bad_auth_is_refused(harness: Harness, channel: str, auth: object) -> None:
    client = await harness.connect(PLAIN.key)
    if isinstance(auth, str):
        auth = auth.format(
            sig=sign_channel(PLAIN.secret, client.socket_id, channel),
            other_socket_sig=sign_channel(PLAIN.secret, "1.2", channel),
        )
    data: dict[str, Any] = {"auth": auth} if auth is not None else {}
    if channel.startswith("presence-"):
        data["channel_data"] = '{"user_id":"1"}'
    client.new()
    await client.subscribe(channel, **data)
    frames = client.new()
    assert [f["event"] for f in frames] == ["pusher:subscription_error", "pusher:error"]
    assert frames[0]["channel"] == channel
    assert decode_data(frames[0])["type"] == "AuthError"
    assert decode_data(frames[0])["status"] == 401
    assert frames[1]["channel"] == channel
    assert await harness.store.subscription(PLAIN.id, client.socket_id, ChannelName(channel)) is None
    assert client.transport.closed is None


async def test_presence_subscription_lists_members_and_announces_the_new_one(harness: Harness) -> None:
    alice, bob = await full(harness), await full(harness)
    await alice.join("presence-room", "alice", {"name": "Alice"})
    alice.new()
    await bob.join("presence-room", "bob", {"name": "Bob"})
    succeeded = only(bob.frames, "pusher_internal:subscription_succeeded")
    assert decode_data(succeeded) == {
        "presence": {
            "ids": ["alice", "bob"],
            "hash": {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}},
            "count": 2,
        }
    }
    assert alice.new() == [
        {
            "event": "pusher_internal:member_added",
            "channel": "presence-room",
            "data": json.dumps({"user_id": "bob", "user_info": {"name": "Bob"}}, separators=(",", ":")),
        }
    ]
    assert bob.of("pusher_internal:member_added") == []


async def test_presence_second_socket_of_a_member_is_not_announced(harness: Harness) -> None:
    alice, alice2 = await full(harness), await full(harness)
    await alice.join("presence-room", "alice")
    alice.new()
    await alice2.join("presence-room", "alice")
    assert [f["event"] for f in alice.new()] == []
    assert decode_data(only(alice2.frames, "pusher_internal:subscription_succeeded"))["presence"]["count"] == 1


async def test_presence_numeric_user_id_becomes_a_string(harness: Harness) -> None:
    client = await full(harness)
    channel_data = '{"user_id":10,"user_info":{"name":"Mr. Pusher"}}'
    sig = sign_channel(FULL.secret, client.socket_id, "presence-room", channel_data)
    await client.subscribe("presence-room", auth=f"{FULL.key}:{sig}", channel_data=channel_data)
    assert dict(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"10": {"name": "Mr. Pusher"}}


async def test_presence_without_channel_data_uses_the_signin_user(harness: Harness) -> None:
    client = await full(harness)
    await client.signin({"id": "u1", "user_info": {"name": "Ann"}})
    sig = sign_channel(FULL.secret, client.socket_id, "presence-room")
    await client.subscribe("presence-room", auth=f"{FULL.key}:{sig}")
    assert decode_data(only(client.frames, "pusher_internal:subscription_succeeded"))["presence"] == {
        "ids": ["u1"],
        "hash": {"u1": {"name": "Ann"}},
        "count": 1,
    }


async def test_presence_channel_data_overrides_the_signin_user(harness: Harness) -> None:
    client = await full(harness)
    await client.signin({"id": "u1"})
    await client.join("presence-room", "u2", {"as": "auth"})
    assert dict(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"u2": {"as": "auth"}}


async def test_presence_without_channel_data_needs_a_signed_in_connection(harness: Harness) -> None:
    client = await full(harness)
    sig = sign_channel(FULL.secret, client.socket_id, "presence-room")
    await client.subscribe("presence-room", auth=f"{FULL.key}:{sig}")
    assert decode_data(only(client.frames, "pusher:subscription_error"))["status"] == 400
    assert await harness.store.members(FULL.id, ChannelName("presence-room")) == {}


@pytest.mark.parametrize(
    "channel_data",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('{"user_info":{}}', id="no-user-id"),
        pytest.param('{"user_id":""}', id="empty-user-id"),
        pytest.param('{"user_id":"a b"}', id="user-id-with-space"),
        pytest.param('{"user_id":"' + "u" * 129 + '"}', id="user-id-over-128"),
        pytest.param('{"user_id":true}', id="bool-user-id"),
        pytest.param("[1]", id="array"),
    ],
)
async def test_presence_bad_channel_data_is_refused(harness: Harness, channel_data: str) -> None:
    client = await full(harness)
    sig = sign_channel(FULL.secret, client.socket_id, "presence-room", channel_data)
    await client.subscribe("presence-room", auth=f"{FULL.key}:{sig}", channel_data=channel_data)
    assert decode_data(only(client.frames, "pusher:subscription_error"))["status"] == 400
    assert await harness.store.members(FULL.id, ChannelName("presence-room")) == {}


async def test_presence_user_info_over_1kb_is_refused(harness: Harness) -> None:
    client = await full(harness)
    await client.join("presence-room", "u1", {"bio": "x" * 1100})
    error = decode_data(only(client.frames, "pusher:subscription_error"))
    assert (error["type"], error["status"]) == ("LimitReached", 413)
    assert await harness.store.members(FULL.id, ChannelName("presence-room")) == {}


async def test_presence_full_channel_refuses_with_4100(harness: Harness) -> None:
    clients = [await full(harness) for _ in range(4)]
    for n, client in enumerate(clients[:3]):
        await client.join("presence-room", f"u{n}")
    await clients[3].join("presence-room", "u3")
    assert decode_data(only(clients[3].frames, "pusher:subscription_error"))["type"] == "LimitReached"
    assert clients[3].errors()[0]["code"] == 4100
    assert clients[3].transport.closed is None
    assert set(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"u0", "u1", "u2"}


async def test_server_to_user_channel_only_for_the_signed_in_users_own_id(harness: Harness) -> None:
    client = await full(harness)
    await client.subscribe("#server-to-user-u1")
    assert decode_data(only(client.frames, "pusher:subscription_error"))["status"] == 403
    await client.signin({"id": "u1"})
    client.new()
    await client.subscribe("#server-to-user-u2")
    assert decode_data(only(client.new(), "pusher:subscription_error"))["status"] == 403
    await client.subscribe("#server-to-user-u1")
    assert [f["event"] for f in client.new()] == ["pusher_internal:subscription_succeeded"]


async def test_subscribing_twice_is_an_error(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    await client.subscribe("news")
    client.new()
    await client.subscribe("news")
    frames = client.new()
    assert [f["event"] for f in frames] == ["pusher:error"]
    assert "Existing subscription" in decode_data(frames[0])["message"]
    assert list(await harness.store.sockets(PLAIN.id, ChannelName("news"))) == [client.socket_id]


async def test_unsubscribe_when_not_subscribed_is_an_error(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    client.new()
    await client.unsubscribe("news")
    assert [f["event"] for f in client.new()] == ["pusher:error"]


async def test_unsubscribe_leaves_the_channel(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    await client.subscribe("news")
    await client.unsubscribe("news")
    assert await harness.store.sockets(PLAIN.id, ChannelName("news")) == ()
    assert client.errors() == []


@pytest.mark.parametrize("channel", ["has space", "#nope", "x" * 201])
async def test_invalid_channel_name_is_refused_on_the_channel(harness: Harness, channel: str) -> None:
    """Like a refused auth: the channel hears it (pusher-js's subscription_error), the connection too."""
    client = await harness.connect(PLAIN.key)
    client.new()
    await client.send("pusher:subscribe", {"channel": channel})
    refused, error = client.new()
    assert refused["event"] == "pusher:subscription_error" and refused["channel"] == channel
    data = decode_data(refused)
    assert (data["type"], data["status"]) == ("InvalidChannel", 400)
    assert data["error"].startswith("Invalid channel name")
    assert (error["event"], error["channel"]) == ("pusher:error", channel)
    assert await harness.store.channels(PLAIN.id) == {}


@pytest.mark.parametrize("channel", ["", None, 5])
async def test_subscribe_without_a_channel_name_is_a_connection_error(harness: Harness, channel: object) -> None:
    """No name a client could have bound to: only the connection-level ``pusher:error``."""
    client = await harness.connect(PLAIN.key)
    client.new()
    await client.send("pusher:subscribe", {"channel": channel})
    assert [(f["event"], f.get("channel")) for f in client.new()] == [("pusher:error", None)]
    assert await harness.store.channels(PLAIN.id) == {}


# -- client events --------------------------------------------------------------------------------------


async def pair_on(harness: Harness, channel: str) -> tuple[Client, Client]:
    a, b = await full(harness), await full(harness)
    await a.join(channel, "ua" if channel.startswith("presence-") else None)
    await b.join(channel, "ub" if channel.startswith("presence-") else None)
    a.new()
    b.new()
    return a, b


async def test_client_event_reaches_others_and_is_not_echoed(harness: Harness) -> None:
    a, b = await pair_on(harness, "private-chat")
    await a.trigger("client-typing", "private-chat", {"who": "a"})
    assert b.new() == [{"event": "client-typing", "channel": "private-chat", "data": '{"who":"a"}'}]
    assert a.new() == []


async def test_client_event_on_presence_carries_the_senders_user_id(harness: Harness) -> None:
    a, b = await pair_on(harness, "presence-room")
    await a.trigger("client-typing", "presence-room", "hello")
    assert b.new() == [{"event": "client-typing", "channel": "presence-room", "data": "hello", "user_id": "ua"}]


async def test_client_events_refused_when_the_app_disables_them(harness: Harness) -> None:
    a, b = await harness.connect(PLAIN.key), await harness.connect(PLAIN.key)
    await a.join("private-chat")
    await b.join("private-chat")
    b.new()
    a.new()
    await a.trigger("client-typing", "private-chat", {})
    assert "not enabled" in a.errors()[0]["message"]
    assert b.new() == []


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        pytest.param("public-chat", "only allowed on private and presence", id="public"),
        pytest.param("private-encrypted-chat", "only allowed on private and presence", id="encrypted"),
    ],
)
async def test_client_events_refused_on_public_and_encrypted_channels(
    harness: Harness, channel: str, message: str
) -> None:
    a, b = await pair_on(harness, channel)
    await a.trigger("client-typing", channel, {})
    assert message in a.errors()[0]["message"]
    assert b.new() == []


async def test_client_event_refused_when_not_subscribed(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    await b.join("private-chat")
    b.new()
    await a.trigger("client-typing", "private-chat", {})
    assert "not subscribed" in a.errors()[0]["message"]
    assert b.new() == []


async def test_client_event_rate_limit_4301_keeps_the_connection(harness: Harness) -> None:
    a, b = await pair_on(harness, "private-chat")
    for n in range(FULL.max_client_events_per_second + 2):
        await a.trigger("client-n", "private-chat", {"n": n})
    assert len(b.new()) == FULL.max_client_events_per_second
    assert [e["code"] for e in a.errors()] == [4301, 4301]
    assert a.transport.closed is None
    assert await harness.store.get_connection(FULL.id, a.socket_id) is not None


async def test_a_connection_that_keeps_exceeding_the_client_event_limit_is_closed_with_4301() -> None:
    """Refusals are counted: past ``max_client_event_refusals`` in the window, the next refusal closes."""
    app = FULL.model_copy(update={"max_client_event_refusals": 2, "webhooks": ()})
    harness = Harness(app)
    a, b = await pair_on(harness, "private-chat")
    for n in range(app.max_client_events_per_second + 2):  # 3 delivered, 2 refused: still open
        await a.trigger("client-n", "private-chat", {"n": n})
    assert a.transport.closed is None
    await a.trigger("client-n", "private-chat", {"n": "third refusal"})
    assert [e["code"] for e in a.errors()] == [4301, 4301, 4301]
    assert "closing" in a.errors()[-1]["message"]
    assert a.transport.closed is not None and a.transport.closed[0] == 4301
    assert len(b.new()) == app.max_client_events_per_second


async def test_client_event_over_payload_limit_is_refused(harness: Harness) -> None:
    a, b = await pair_on(harness, "private-chat")
    await a.trigger("client-big", "private-chat", "x" * (10 * 1024 + 1))
    assert "over" in a.errors()[0]["message"]
    assert b.new() == []


# -- sign-in and watchlists -----------------------------------------------------------------------------


async def test_signin_success(harness: Harness) -> None:
    client = await full(harness)
    user_data = await client.signin({"id": "u1", "user_info": {"name": "Ann"}})
    assert decode_data(only(client.frames, "pusher:signin_success")) == {"user_data": user_data}
    assert list(await harness.store.user_sockets(FULL.id, UserId("u1"))) == [client.socket_id]


async def test_signin_with_bad_signature_closes_with_4009(harness: Harness) -> None:
    client = await full(harness)
    await client.send("pusher:signin", {"auth": f"{FULL.key}:{'0' * 64}", "user_data": '{"id":"u1"}'})
    assert client.errors()[0]["code"] == 4009
    assert client.transport.closed is not None
    assert client.transport.closed[0] == 4009
    assert list(await harness.store.user_sockets(FULL.id, UserId("u1"))) == []


async def test_signin_refused_when_user_authentication_is_disabled(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    user_data = '{"id":"u1"}'
    sig = sign_user(PLAIN.secret, client.socket_id, user_data)
    await client.send("pusher:signin", {"auth": f"{PLAIN.key}:{sig}", "user_data": user_data})
    assert client.of("pusher:signin_success") == []
    assert len(client.errors()) == 1


async def test_signin_reports_watchlist_status_in_pusher_js_format(harness: Harness) -> None:
    bob = await full(harness)
    await bob.signin({"id": "bob"})
    alice = await full(harness)
    alice.new()
    await alice.signin({"id": "alice", "watchlist": ["bob", "carol"]})
    raw = [r for r in alice.transport.raw if b"watchlist_events" in r]
    assert len(raw) == 1
    frame = json.loads(raw[0])
    assert frame == {"event": "pusher_internal:watchlist_events", "data": frame["data"]}
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {
        "events": [{"name": "online", "user_ids": ["bob"]}, {"name": "offline", "user_ids": ["carol"]}]
    }


async def test_watchers_hear_online_on_first_socket_and_offline_on_last(harness: Harness) -> None:
    alice = await full(harness)
    await alice.signin({"id": "alice", "watchlist": ["bob"]})
    alice.new()
    bob1, bob2 = await full(harness), await full(harness)
    await bob1.signin({"id": "bob"})
    await bob2.signin({"id": "bob"})
    online = [f for f in alice.new() if f["event"] == "pusher_internal:watchlist_events"]
    assert [decode_data(f) for f in online] == [{"events": [{"name": "online", "user_ids": ["bob"]}]}]
    await bob1.disconnect()
    assert alice.new() == []
    await bob2.disconnect()
    assert alice.new() == [
        {"event": "pusher_internal:watchlist_events", "data": '{"events":[{"name":"offline","user_ids":["bob"]}]}'}
    ]


async def test_watchlist_over_100_ids_gets_4302_and_keeps_the_first_100(harness: Harness) -> None:
    client = await full(harness)
    await client.signin({"id": "me", "watchlist": [f"u{n}" for n in range(150)]})
    assert [e["code"] for e in client.errors()] == [4302]
    assert client.transport.closed is None
    connection = await harness.store.get_connection(FULL.id, client.socket_id)
    assert connection is not None
    assert list(connection.watchlist) == [f"u{n}" for n in range(100)]


# -- subscription_count ---------------------------------------------------------------------------------


def counts(client: Client) -> list[int]:
    return [decode_data(f)["subscription_count"] for f in client.new() if f["event"].endswith("subscription_count")]


async def test_subscription_count_sent_to_subscribers_when_enabled(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    await a.join("room")
    assert counts(a) == [1]
    await b.join("room")
    assert counts(a) == [2]
    assert counts(b) == [2]
    await b.unsubscribe("room")
    assert counts(a) == [1]
    await b.join("room")
    counts(a)
    await b.disconnect()
    assert counts(a) == [1]


async def test_subscription_count_above_100_is_sent_at_most_once_per_5_seconds(harness: Harness) -> None:
    first = await full(harness)
    await first.join("big")
    for _ in range(101):
        await (await full(harness)).join("big")
    seen = counts(first)
    assert seen[:100] == list(range(1, 101))  # every change up to 100 subscribers
    assert seen[100:] == [101]  # then one, and the 102nd within 5 s is held back
    await (await full(harness)).join("big")
    assert counts(first) == []
    harness.clock.advance(5.1)
    await (await full(harness)).join("big")
    assert counts(first) == [104]


async def test_subscription_count_not_sent_for_presence_channels(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    await a.join("presence-room", "a")
    await b.join("presence-room", "b")
    assert counts(a) == []
    assert counts(b) == []


async def test_subscription_count_not_sent_when_the_app_disables_it(harness: Harness) -> None:
    a, b = await harness.connect(PLAIN.key), await harness.connect(PLAIN.key)
    await a.join("room")
    await b.join("room")
    assert counts(a) == []
    assert counts(b) == []


# -- cache channels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel", ["cache-news", "private-cache-news", "private-encrypted-cache-news", "presence-cache-news"]
)
async def test_cache_channel_replays_the_last_event_to_a_new_subscriber(harness: Harness, channel: str) -> None:
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    await harness.engine.publish(app, [channel], "update", '{"v":1}')
    await harness.engine.publish(app, [channel], "update", '{"v":2}')
    client = await full(harness)
    client.new()
    await client.join(channel, "u1" if channel.startswith("presence-") else None)
    frames = [f for f in client.new() if not f["event"].endswith("subscription_count")]
    assert [f["event"] for f in frames] == ["pusher_internal:subscription_succeeded", "update"]
    assert frames[1] == {"event": "update", "channel": channel, "data": '{"v":2}'}


async def test_cache_channel_without_an_event_sends_cache_miss_and_one_webhook(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    a.new()
    await a.join("cache-empty")
    assert {"event": "pusher:cache_miss", "channel": "cache-empty"} in a.new()
    await b.join("cache-empty")
    assert {"event": "pusher:cache_miss", "channel": "cache-empty"} in b.new()
    misses = [e for e in await harness.ready_webhooks() if e["name"] == "cache_miss"]
    assert misses == [{"name": "cache_miss", "channel": "cache-empty"}]


async def test_non_cache_channel_gets_neither_replay_nor_cache_miss(harness: Harness) -> None:
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    await harness.engine.publish(app, ["news"], "update", "{}")
    client = await full(harness)
    client.new()
    await client.join("news")
    assert [f["event"] for f in client.new() if not f["event"].endswith("subscription_count")] == [
        "pusher_internal:subscription_succeeded"
    ]


# -- webhooks -------------------------------------------------------------------------------------------


async def test_channel_occupied_webhook_now_and_vacated_after_3_seconds(harness: Harness) -> None:
    client = await full(harness)
    await client.join("news")
    assert [e for e in await harness.ready_webhooks() if e["name"].startswith("channel_")] == [
        {"name": "channel_occupied", "channel": "news"}
    ]
    await client.unsubscribe("news")
    await harness.ready_webhooks()  # subscription_count events are immediate
    harness.clock.advance(2.9)
    assert await harness.ready_webhooks() == []
    harness.clock.advance(0.2)
    assert await harness.ready_webhooks() == [{"name": "channel_vacated", "channel": "news"}]


async def test_member_added_webhook_now_and_member_removed_after_3_seconds(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    await a.join("presence-room", "alice")
    await b.join("presence-room", "bob")
    assert [e for e in await harness.ready_webhooks() if e["name"] != "channel_occupied"] == [
        {"name": "member_added", "channel": "presence-room", "user_id": "alice"},
        {"name": "member_added", "channel": "presence-room", "user_id": "bob"},
    ]
    await b.disconnect()
    assert await harness.ready_webhooks() == []
    harness.clock.advance(3.0)
    assert await harness.ready_webhooks() == [{"name": "member_removed", "channel": "presence-room", "user_id": "bob"}]


async def test_rejoin_after_the_delay_is_a_new_occupation(harness: Harness) -> None:
    client = await full(harness)
    await client.join("news")
    await client.unsubscribe("news")
    harness.clock.advance(3.1)
    await client.join("news")
    names = [e["name"] for e in await harness.ready_webhooks() if e["name"].startswith("channel_")]
    assert names == ["channel_occupied", "channel_vacated", "channel_occupied"]


async def test_rejoin_within_the_delay_after_a_while_emits_no_second_occupied(harness: Harness) -> None:
    """Pusher: a client back within 3 s produces neither event (the dispatcher drops the stale vacated)."""
    client = await full(harness)
    await client.join("news")
    harness.clock.advance(0.5)
    await client.unsubscribe("news")
    harness.clock.advance(0.5)
    await client.join("news")
    assert [e["name"] for e in await harness.ready_webhooks() if e["name"].startswith("channel_")] == [
        "channel_occupied"
    ]


async def test_quick_subscribe_unsubscribe_subscribe_emits_one_occupied(harness: Harness) -> None:
    """React StrictMode mounts twice: subscribe, unsubscribe and subscribe arrive back to back."""
    client = await full(harness)
    await client.join("news")
    await client.unsubscribe("news")
    harness.clock.advance(0.01)
    await client.join("news")
    assert [e["name"] for e in await harness.ready_webhooks() if e["name"].startswith("channel_")] == [
        "channel_occupied"
    ]


async def test_client_event_webhook(harness: Harness) -> None:
    a, _b = await pair_on(harness, "presence-room")
    await harness.ready_webhooks()
    await a.trigger("client-typing", "presence-room", {"x": 1})
    assert await harness.ready_webhooks() == [
        {
            "name": "client_event",
            "channel": "presence-room",
            "event": "client-typing",
            "data": '{"x":1}',
            "socket_id": a.socket_id,
            "user_id": "ua",
        }
    ]


async def test_subscription_count_webhook(harness: Harness) -> None:
    a = await full(harness)
    await a.join("room")
    assert {"name": "subscription_count", "channel": "room", "subscription_count": 1} in await harness.ready_webhooks()


async def test_webhooks_only_for_wanted_event_types_and_channels() -> None:
    hook = WebhookConfig(
        url="http://127.0.0.1:9/hook",
        event_types=("channel_occupied",),
        filter=WebhookFilter(channel_prefix="private-"),
    )
    app = AppConfig(id=AppId("f"), key="f-key", secret="f-secret", webhooks=(hook,))
    harness = Harness(app)
    client = await harness.connect(app.key)
    await client.join("news")
    await client.join("private-a")
    await client.join("presence-r", "u1")
    await client.unsubscribe("private-a")
    harness.clock.advance(10)
    assert await harness.ready_webhooks() == [{"name": "channel_occupied", "channel": "private-a"}]


async def test_no_webhook_jobs_for_an_app_without_webhooks(harness: Harness) -> None:
    client = await harness.connect(PLAIN.key)
    await client.join("news")
    await client.disconnect()
    harness.clock.advance(10)
    assert await harness.queue.pending() == 0


# -- publishing (REST) ----------------------------------------------------------------------------------


async def test_publish_reaches_subscribers_except_the_excluded_socket(harness: Harness) -> None:
    a, b = await pair_on(harness, "news")
    outsider = await full(harness)
    outsider.new()
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    await harness.engine.publish(app, ["news", "other"], "update", '{"v":1}', except_socket=a.socket_id)
    assert b.new() == [{"event": "update", "channel": "news", "data": '{"v":1}'}]
    assert a.new() == []
    assert outsider.new() == []


async def test_publish_to_server_to_user_reaches_every_signed_in_socket_of_the_user(harness: Harness) -> None:
    u1a, u1b, u2 = await full(harness), await full(harness), await full(harness)
    await u1a.signin({"id": "u1"})
    await u1b.signin({"id": "u1"})
    await u2.signin({"id": "u2"})
    for client in (u1a, u1b, u2):
        client.new()
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    await harness.engine.publish(app, ["#server-to-user-u1"], "notice", '{"hi":1}')
    expected = [{"event": "notice", "channel": "#server-to-user-u1", "data": '{"hi":1}'}]
    assert u1a.new() == expected
    assert u1b.new() == expected
    assert u2.new() == []


async def test_publish_to_a_gone_socket_removes_it(harness: Harness) -> None:
    """A socket the sender no longer knows (410 on AWS) is cleaned up like a disconnect: no ghost member."""
    a, b = await pair_on(harness, "presence-room")
    harness.sender.unregister(b.socket_id)
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    await harness.engine.publish(app, ["presence-room"], "update", "{}")
    assert await harness.store.get_connection(FULL.id, b.socket_id) is None
    assert set(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"ua"}
    assert {
        "event": "pusher_internal:member_removed",
        "channel": "presence-room",
        "data": '{"user_id":"ub"}',
    } in a.new()


async def test_terminate_user_closes_signed_in_connections_with_4009(harness: Harness) -> None:
    a, b, other = await full(harness), await full(harness), await full(harness)
    await a.signin({"id": "u1"})
    await b.signin({"id": "u1"})
    await other.join("presence-room", "u1")
    app = await harness.engine.app_by_id(FULL.id)
    assert app is not None
    assert await harness.engine.terminate_user(app, "u1") == 2
    assert a.transport.closed is not None
    assert a.transport.closed[0] == 4009
    assert b.transport.closed is not None
    assert other.transport.closed is None


# -- disconnecting --------------------------------------------------------------------------------------


async def test_disconnect_cleans_up_everything_and_tells_the_others(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    await a.signin({"id": "ua"})
    await a.join("presence-room", "ua")
    await a.join("private-chat")
    await a.join("news")
    await b.join("presence-room", "ub")
    b.new()
    await a.disconnect()
    assert b.new() == [
        {"event": "pusher_internal:member_removed", "channel": "presence-room", "data": '{"user_id":"ua"}'}
    ]
    assert await harness.store.get_connection(FULL.id, a.socket_id) is None
    assert set(await harness.store.channels(FULL.id)) == {"presence-room"}
    assert set(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"ub"}
    assert list(await harness.store.user_sockets(FULL.id, UserId("ua"))) == []
    harness.clock.advance(3.0)
    removed = [e for e in await harness.ready_webhooks() if e["name"] in ("member_removed", "channel_vacated")]
    assert sorted(removed, key=lambda e: (e["name"], e["channel"])) == [
        {"name": "channel_vacated", "channel": "news"},
        {"name": "channel_vacated", "channel": "private-chat"},
        {"name": "member_removed", "channel": "presence-room", "user_id": "ua"},
    ]


async def test_disconnect_is_idempotent(harness: Harness) -> None:
    a, b = await pair_on(harness, "presence-room")
    await a.disconnect()
    b.new()
    await harness.engine.disconnect(a.app, a.socket_id)
    await harness.engine.disconnect(a.app, SocketId("999.999"))
    assert b.new() == []
    assert set(await harness.store.members(FULL.id, ChannelName("presence-room"))) == {"ub"}


# -- hostile but correctly signed payloads (the app backend signs what the user typed) -------------------


async def test_presence_user_info_with_a_lone_surrogate_does_not_poison_the_channel(harness: Harness) -> None:
    a, b = await full(harness), await full(harness)
    channel_data = '{"user_id":"ua","user_info":{"name":"\\ud800"}}'
    sig = sign_channel(FULL.secret, a.socket_id, "presence-room", channel_data)
    await a.subscribe("presence-room", auth=f"{FULL.key}:{sig}", channel_data=channel_data)
    await b.join("presence-room", "ub")
    succeeded = decode_data(only(b.frames, "pusher_internal:subscription_succeeded"))
    assert succeeded["presence"]["ids"] == ["ua", "ub"]
    assert succeeded["presence"]["hash"]["ua"] == {"name": "\ud800"}
    assert decode_data(only(a.frames, "pusher_internal:member_added"))["user_id"] == "ub"


@pytest.mark.parametrize(
    "channel_data",
    [
        pytest.param('{"user_id":"u1","user_info":' + "[" * 20_000 + "]" * 20_000 + "}", id="deep-channel-data"),
    ],
)
async def test_presence_deeply_nested_channel_data_is_refused(harness: Harness, channel_data: str) -> None:
    client = await full(harness)
    sig = sign_channel(FULL.secret, client.socket_id, "presence-room", channel_data)
    await client.subscribe("presence-room", auth=f"{FULL.key}:{sig}", channel_data=channel_data)
    assert decode_data(only(client.frames, "pusher:subscription_error"))["status"] == 400
    assert await harness.store.members(FULL.id, ChannelName("presence-room")) == {}


async def test_signin_with_deeply_nested_user_data_is_refused(harness: Harness) -> None:
    client = await full(harness)
    user_data = '{"id":"u1","user_info":' + "[" * 20_000 + "]" * 20_000 + "}"
    sig = sign_user(FULL.secret, client.socket_id, user_data)
    await client.send("pusher:signin", {"auth": f"{FULL.key}:{sig}", "user_data": user_data})
    assert client.errors()[0]["code"] == 4009
    assert list(await harness.store.user_sockets(FULL.id, UserId("u1"))) == []


class _StoreDown(MemoryChannelStore):
    """A store whose backend stopped answering after the connection was recorded (a Redis or DynamoDB outage)."""

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("backend unreachable")


async def test_store_outage_during_a_frame_closes_with_4100_so_the_client_starts_over(harness: Harness) -> None:
    client = await harness.connect(FULL.key)
    harness.engine.store = _StoreDown()
    await harness.engine.handle(
        client.app, client.socket_id, json.dumps({"event": "pusher:subscribe", "data": {"channel": "news"}})
    )
    assert client.errors()[-1]["code"] == 4100
    assert client.transport.closed is not None and client.transport.closed[0] == 4100
