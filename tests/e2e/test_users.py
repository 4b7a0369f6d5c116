"""User sign-in, server-to-user messages and watchlists with real pusher-js and both server SDKs."""

from __future__ import annotations

import asyncio
import json

import pusher
import pytest

from tests.e2e.jsdriver import App, JsClient, NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e


async def signed_in(js: NodeDriver, name: str, app: App, server: ServerProcess, user: dict[str, object]) -> JsClient:
    """A pusher-js client signed in as ``user``, with its ``#server-to-user-<id>`` subscription confirmed."""
    client = await js.client(name, app, server.port, signin=user)
    success = await client.signin()
    assert json.loads(success["data"]["user_data"]) == user
    await client.expect("pusher_internal:subscription_succeeded", f"#server-to-user-{user['id']}", kind="message")
    return client


async def test_signin_then_send_to_user_from_both_sdks_reaches_every_connection_of_that_user(
    js: NodeDriver, server: ServerProcess, numeric_app: App, python_sdk: pusher.Pusher
) -> None:
    alice_laptop = await signed_in(js, "alice-laptop", numeric_app, server, {"id": "alice", "user_info": {"n": 1}})
    alice_phone = await signed_in(js, "alice-phone", numeric_app, server, {"id": "alice"})
    bob = await signed_in(js, "bob", numeric_app, server, {"id": "bob"})

    reply = await js.sdk_send_to_user(numeric_app, server.port, "alice", "notice", {"from": "node"})
    assert reply["status"] == 200, reply
    for client in (alice_laptop, alice_phone):
        assert (await client.expect("notice", kind="user"))["data"] == {"from": "node"}

    await asyncio.to_thread(python_sdk.send_to_user, "alice", "notice", {"from": "python"})
    for client in (alice_laptop, alice_phone):
        assert (await client.expect("notice", kind="user"))["data"] == {"from": "python"}

    await bob.assert_no("notice")


async def test_signin_with_a_wrong_signature_is_refused_with_4009(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    client = await js.client("mallory", app, server.port, signin={"id": "alice"}, wrong_secret=True)
    await js.call("signin", client="mallory")

    await client.expect_error(4009)
    await client.assert_no("pusher:signin_success")


async def test_watchlist_reports_when_watched_users_come_online_and_go_offline(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    alice = await signed_in(js, "alice", app, server, {"id": "alice", "watchlist": ["bob", "carol"]})
    initially = await alice.expect("offline", kind="watchlist")
    assert sorted(initially["data"]["user_ids"]) == ["bob", "carol"]

    bob = await signed_in(js, "bob", app, server, {"id": "bob"})
    online = await alice.expect("online", kind="watchlist")
    assert online["data"]["user_ids"] == ["bob"]

    # A second connection of bob changes nothing; the last one leaving makes him offline.
    bob_phone = await signed_in(js, "bob-phone", app, server, {"id": "bob"})
    await alice.assert_no("online", kind="watchlist")
    await bob.disconnect()
    await alice.assert_no("offline", kind="watchlist")
    await bob_phone.disconnect()
    offline = await alice.expect("offline", kind="watchlist")
    assert offline["data"]["user_ids"] == ["bob"]


async def test_terminate_user_connections_stops_every_connection_of_that_user(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    laptop = await signed_in(js, "alice-laptop", app, server, {"id": "alice"})
    phone = await signed_in(js, "alice-phone", app, server, {"id": "alice"})
    bob = await signed_in(js, "bob", app, server, {"id": "bob"})

    reply = await js.sdk_terminate_user(app, server.port, "alice")

    assert reply["status"] == 200, reply
    for client in (laptop, phone):
        await client.expect_error(4009)
        await client.expect_state("disconnected")
    assert (await bob.info())["state"] == "connected"
