"""Every REST endpoint through the official Python ``pusher`` SDK (3.3.4), which also signs GETs with body_md5.

Raw WebSocket clients make the subscriptions and presence members, so every answer is checked against
state the test created, and every publish against the frames a subscriber actually received.
"""

from __future__ import annotations

import json
import re

import aiohttp
import pusher
import pytest
from pusher.errors import PusherBadRequest, PusherBadStatus

from tests.conftest import DEFAULT_APP
from tests.rest.clients import Creds, rest, signed_url
from tests.rest.conftest import Connect
from tests.serverproc import ServerProcess


async def test_trigger_reaches_subscribers_but_not_the_excluded_socket(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    channel = f"py-trigger-{uid}"
    sender, other = await connect(server), await connect(server)
    await sender.subscribe(channel)
    await other.subscribe(channel)

    assert sdk.trigger(channel, "greeting", {"hello": "world"}, socket_id=sender.socket_id) == {}
    sdk.trigger(channel, "after", "plain string")

    frame = await other.expect_event(channel, "greeting")
    assert json.loads(frame["data"]) == {"hello": "world"}
    assert (await other.expect_event(channel, "after"))["data"] == "plain string"
    # The excluded socket's next event is the second one: it never saw "greeting".
    await sender.expect_event(channel, "after")


async def test_trigger_to_many_channels_delivers_once_per_channel(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    channels = [f"py-multi-{uid}-{n}" for n in range(3)]
    client = await connect(server)
    for channel in channels:
        await client.subscribe(channel)

    sdk.trigger(channels, "fan", "x")

    received = [await client.next_event() for _ in channels]
    assert sorted((f["channel"], f["event"]) for f in received) == [(c, "fan") for c in channels]


async def test_trigger_batch_returns_info_aligned_with_the_request(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    presence, public = f"presence-py-batch-{uid}", f"py-batch-{uid}"
    alice_phone, alice_laptop, bob = await connect(server), await connect(server), await connect(server)
    await alice_phone.subscribe(presence, user_id="alice")
    await alice_laptop.subscribe(presence, user_id="alice")
    await bob.subscribe(presence, user_id="bob")
    await bob.subscribe(public)
    await alice_phone.subscribe(public)

    result = sdk.trigger_batch(
        [
            {"channel": presence, "name": "first", "data": "1", "info": "user_count"},
            {"channel": public, "name": "second", "data": "2", "info": "subscription_count"},
            {"channel": public, "name": "third", "data": "3"},
        ]
    )

    assert result == {"batch": [{"user_count": 2}, {"subscription_count": 2}, {}]}
    assert [(await bob.next_event())["event"] for _ in range(3)] == ["first", "second", "third"]


async def test_trigger_batch_without_info_answers_an_empty_object(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    channel = f"py-batch-plain-{uid}"
    client = await connect(server)
    await client.subscribe(channel)

    assert sdk.trigger_batch([{"channel": channel, "name": "a", "data": "1"}]) == {}
    await client.expect_event(channel, "a")


async def test_channels_lists_occupied_channels_filtered_by_prefix(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    prefix = f"py-list-{uid}-"
    a, b = await connect(server), await connect(server)
    await a.subscribe(f"{prefix}one")
    await a.subscribe(f"{prefix}two")
    await b.subscribe(f"{prefix}two")
    await a.subscribe(f"presence-{prefix}room", user_id="u1")
    await b.subscribe(f"presence-{prefix}room", user_id="u2")

    assert sdk.channels_info(prefix) == {"channels": {f"{prefix}one": {}, f"{prefix}two": {}}}
    assert sdk.channels_info(prefix, ["subscription_count"]) == {
        "channels": {f"{prefix}one": {"subscription_count": 1}, f"{prefix}two": {"subscription_count": 2}}
    }
    assert sdk.channels_info(f"presence-{prefix}", ["user_count"]) == {
        "channels": {f"presence-{prefix}room": {"user_count": 2}}
    }

    await a.unsubscribe(f"{prefix}one")
    assert sdk.channels_info(prefix) == {"channels": {f"{prefix}two": {}}}


async def test_channels_refuses_user_count_unless_limited_to_presence_channels(sdk: pusher.Pusher) -> None:
    with pytest.raises(PusherBadRequest, match="filter_by_prefix=presence-"):
        sdk.channels_info(attributes=["user_count"])
    with pytest.raises(PusherBadRequest, match="filter_by_prefix=presence-"):
        sdk.channels_info("private-", ["user_count"])


async def test_channel_reports_occupancy_and_the_counts_of_its_type(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    public, presence = f"py-info-{uid}", f"presence-py-info-{uid}"
    assert sdk.channel_info(public, ["subscription_count"]) == {"occupied": False, "subscription_count": 0}
    assert sdk.channel_info(presence, ["user_count"]) == {"occupied": False, "user_count": 0}

    a, b = await connect(server), await connect(server)
    for client in (a, b):
        await client.subscribe(public)
        await client.subscribe(presence, user_id="same-user")

    assert sdk.channel_info(public) == {"occupied": True}
    assert sdk.channel_info(public, ["subscription_count"]) == {"occupied": True, "subscription_count": 2}
    assert sdk.channel_info(presence, ["user_count"]) == {"occupied": True, "user_count": 1}


@pytest.mark.parametrize(
    ("channel", "attribute"),
    [
        pytest.param("py-public", "user_count", id="user_count-on-public"),
        pytest.param("private-py", "user_count", id="user_count-on-private"),
        pytest.param("presence-py", "subscription_count", id="subscription_count-on-presence"),
        pytest.param("py-public", "cache", id="cache-on-non-cache-channel"),
        pytest.param("py-public", "occupied", id="unknown-attribute"),
    ],
)
def test_channel_refuses_attributes_its_type_does_not_have(sdk: pusher.Pusher, channel: str, attribute: str) -> None:
    with pytest.raises(PusherBadRequest):
        sdk.channel_info(channel, [attribute])


async def test_channel_returns_the_cached_event_of_a_cache_channel(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    channel = f"cache-py-{uid}"
    assert sdk.channel_info(channel, ["cache"]) == {"occupied": False, "cache": None}

    sdk.trigger(channel, "state", {"v": 1})
    sdk.trigger(channel, "state", {"v": 2})
    info = sdk.channel_info(channel, ["cache"])

    assert info["occupied"] is False
    assert json.loads(info["cache"]["data"]) == {"v": 2}
    assert 0 < info["cache"]["ttl"] <= 1800
    # What the REST API reports is what a new subscriber gets first.
    client = await connect(server)
    await client.subscribe(channel)
    assert json.loads((await client.expect_event(channel, "state"))["data"]) == {"v": 2}


async def test_users_lists_each_presence_member_once(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    channel = f"presence-py-users-{uid}"
    assert sdk.users_info(channel) == {"users": []}
    for user in ("u1", "u1", "u2"):
        await (await connect(server)).subscribe(channel, user_id=user, user_info={"name": user})

    users = sdk.users_info(channel)["users"]

    assert sorted(users, key=lambda u: u["id"]) == [{"id": "u1"}, {"id": "u2"}]


@pytest.mark.parametrize("channel", ["py-public", "private-py", "cache-py"])
def test_users_is_only_for_presence_channels(sdk: pusher.Pusher, channel: str) -> None:
    with pytest.raises(PusherBadRequest, match="presence"):
        sdk.users_info(channel)


async def test_send_to_user_reaches_every_connection_signed_in_as_that_user(
    server: ServerProcess, sdk: pusher.Pusher, connect: Connect, uid: str
) -> None:
    user, other_user = f"py-user-{uid}", f"py-other-{uid}"
    phone, laptop, stranger = await connect(server), await connect(server), await connect(server)
    await phone.signin(user)
    await laptop.signin(user)
    await stranger.signin(other_user)

    assert sdk.send_to_user(user, "note", {"n": 1}) == {}
    sdk.send_to_user(other_user, "sentinel", "x")

    for client in (phone, laptop):
        frame = await client.expect_event(f"#server-to-user-{user}", "note")
        assert json.loads(frame["data"]) == {"n": 1}
    await stranger.expect_event(f"#server-to-user-{other_user}", "sentinel")


async def test_terminate_connections_closes_only_the_users_signed_in_sockets(
    server: ServerProcess, sdk: pusher.Pusher, http: aiohttp.ClientSession, numeric: Creds, connect: Connect, uid: str
) -> None:
    # pusher 3.3.4 builds this URL without /apps/{id} (docs/sources.md#tooling), so the request is signed by hand.
    user, channel = f"py-term-{uid}", f"py-term-{uid}"
    phone, laptop, bystander = await connect(server), await connect(server), await connect(server)
    await phone.signin(user)
    await laptop.signin(user)
    await bystander.signin(f"py-bystander-{uid}")
    await bystander.subscribe(channel)

    status, body = await rest(
        http, server.url, "POST", f"/apps/{numeric.id}/users/{user}/terminate_connections", numeric, body={}
    )

    assert (status, body) == (200, {})
    assert await phone.closed() == 4009
    assert await laptop.closed() == 4009
    sdk.trigger(channel, "still-here", "x")
    await bystander.expect_event(channel, "still-here")


def test_the_python_sdks_terminate_path_is_a_json_404_not_a_crash(sdk: pusher.Pusher) -> None:
    with pytest.raises(PusherBadStatus, match=re.escape('404: {"error": "Not found"}')):
        sdk.terminate_user_connections("someone")


async def test_gets_signed_with_body_md5_are_accepted_and_a_wrong_md5_is_not(
    server: ServerProcess, http: aiohttp.ClientSession, numeric: Creds
) -> None:
    path = f"/apps/{numeric.id}/channels"
    async with http.get(signed_url(server.url, "GET", path, numeric, body_md5=True)) as resp:
        assert resp.status == 200
        assert isinstance((await resp.json())["channels"], dict)
    # Correctly signed, but the md5 is not the empty body's.
    wrong = signed_url(server.url, "GET", path, numeric, params={"body_md5": "0" * 32}, body_md5=False)
    async with http.get(wrong) as resp:
        assert (resp.status, await resp.json()) == (401, {"error": "body_md5 does not match the body"})


async def test_the_default_app_works_with_the_sdk_unchanged(server: ServerProcess, connect: Connect, uid: str) -> None:
    """The app `make serve` runs: its numeric id is one the SDK accepts (it refuses "app-id" at construction)."""
    default = Creds.of(DEFAULT_APP)
    client = await connect(server, default)
    await client.subscribe(f"py-default-{uid}")
    sdk = pusher.Pusher(
        app_id=default.id, key=default.key, secret=default.secret, host="127.0.0.1", port=server.port, ssl=False
    )
    sdk.trigger(f"py-default-{uid}", "hello", "world")
    assert (await client.expect_event(f"py-default-{uid}", "hello"))["data"] == "world"
