"""Channels with real pusher-js, fed by the official Python and Node server SDKs."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from typing import Any, Literal

import pusher
import pytest
from aiohttp import web

from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.e2e

Sdk = Literal["python", "node"]
SDKS = [pytest.param("python", id="python-sdk"), pytest.param("node", id="node-sdk")]


async def publish(
    sdk: Sdk,
    js: NodeDriver,
    server: ServerProcess,
    app: App,
    channel: str,
    event: str,
    data: Any,
    socket_id: str | None = None,
) -> None:
    """Trigger through one of the official SDKs, as a customer's backend would."""
    if sdk == "python":
        assert app.id.isdigit(), "the Python SDK only accepts numeric app ids"
        backend = pusher.Pusher(
            app_id=app.id, key=app.key, secret=app.secret, ssl=False, host="127.0.0.1", port=server.port
        )
        await asyncio.to_thread(backend.trigger, channel, event, data, socket_id)
    else:
        reply = await js.sdk_trigger(app, server.port, channel, event, data, socket_id=socket_id)
        assert reply["status"] == 200, reply


@pytest.mark.parametrize("sdk", SDKS)
async def test_public_channel_receives_an_event_triggered_by_the_sdk(
    sdk: Sdk, js: NodeDriver, server: ServerProcess, numeric_app: App
) -> None:
    client = await js.client("a", numeric_app, server.port)
    await client.subscribe(f"news-{sdk}", "headline")

    await publish(sdk, js, server, numeric_app, f"news-{sdk}", "headline", {"title": "sockless ships", "n": 1})

    event = await client.expect("headline", f"news-{sdk}")
    assert event["data"] == {"title": "sockless ships", "n": 1}


@pytest.mark.parametrize("sdk", SDKS)
async def test_trigger_with_a_socket_id_skips_that_socket_only(
    sdk: Sdk, js: NodeDriver, server: ServerProcess, numeric_app: App
) -> None:
    channel = f"excluded-{sdk}"
    sender = await js.client("sender", numeric_app, server.port)
    other = await js.client("other", numeric_app, server.port)
    await sender.subscribe(channel, "update")
    await other.subscribe(channel, "update")

    await publish(sdk, js, server, numeric_app, channel, "update", {"v": 1}, socket_id=await sender.socket_id())

    assert (await other.expect("update", channel))["data"] == {"v": 1}
    await sender.assert_no("update", channel)


async def test_private_channel_with_channel_authorization(js: NodeDriver, server: ServerProcess, app: App) -> None:
    client = await js.client("a", app, server.port)
    await client.subscribe("private-orders", "created")

    await publish("node", js, server, app, "private-orders", "created", {"id": 7})

    assert (await client.expect("created", "private-orders"))["data"] == {"id": 7}


async def test_private_channel_with_a_wrong_signature_is_refused(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    client = await js.client("forger", app, server.port, wrong_secret=True)
    await client.subscribe("private-vault", "secret", succeed=False)

    refused = await client.expect("pusher:subscription_error", "private-vault")
    assert refused["data"]["status"] == 401
    await client.expect_error(None, "Invalid signature")
    await publish("node", js, server, app, "private-vault", "secret", {"leak": True})
    await client.assert_no("secret", "private-vault")
    assert (await client.info())["state"] == "connected"


@pytest.mark.parametrize(
    "channel", [pytest.param("has space", id="bad-character"), pytest.param("x" * 201, id="too-long")]
)
async def test_invalid_channel_name_reaches_the_channel_as_a_subscription_error(
    js: NodeDriver, server: ServerProcess, app: App, channel: str
) -> None:
    """A refused name is a refused subscription: the channel's own callback hears it, as for a refused auth."""
    client = await js.client("typo", app, server.port)
    await client.subscribe(channel, succeed=False)

    refused = await client.expect("pusher:subscription_error", channel)
    assert refused["data"]["type"] == "InvalidChannel" and refused["data"]["status"] == 400
    assert refused["data"]["error"].startswith("Invalid channel name")
    await client.expect_error(None, "Invalid channel name")  # Pusher's connection-level frame stays
    assert (await client.info())["state"] == "connected"


@pytest.fixture
async def auth_endpoint(python_sdk: pusher.Pusher) -> AsyncIterator[str]:
    """A customer backend: signs private channels with the Python SDK, refuses ``private-forbidden-*``."""

    async def authorize(request: web.Request) -> web.Response:
        form = await request.post()
        channel, socket_id = str(form["channel_name"]), str(form["socket_id"])
        if channel.startswith("private-forbidden-"):
            return web.json_response({"error": "not yours"}, status=403)
        return web.json_response(python_sdk.authenticate(channel=channel, socket_id=socket_id))

    app = web.Application()
    app.router.add_post("/pusher/auth", authorize)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/pusher/auth"
    finally:
        await runner.cleanup()


async def test_private_channel_through_an_auth_endpoint_signed_by_the_python_sdk(
    js: NodeDriver, server: ServerProcess, numeric_app: App, auth_endpoint: str
) -> None:
    client = await js.client("a", numeric_app, server.port, auth_endpoint=auth_endpoint)
    await client.subscribe("private-invoices", "paid")
    await client.subscribe("private-forbidden-payroll", succeed=False)

    await publish("python", js, server, numeric_app, "private-invoices", "paid", {"total": 42})

    assert (await client.expect("paid", "private-invoices"))["data"] == {"total": 42}
    refused = await client.expect("pusher:subscription_error", "private-forbidden-payroll")
    assert refused["data"]["type"] == "AuthError"
    assert refused["data"]["status"] == 403


async def test_presence_members_join_and_leave_once_per_user(js: NodeDriver, server: ServerProcess, app: App) -> None:
    channel = "presence-room"
    alice = await js.client("alice", app, server.port, user={"user_id": "alice", "user_info": {"name": "Alice"}})
    bob_info = {"name": "Bob"}
    bob = await js.client("bob", app, server.port, user={"user_id": "bob", "user_info": bob_info})
    bob_phone = await js.client("bob-phone", app, server.port, user={"user_id": "bob", "user_info": bob_info})

    joined = await alice.subscribe(channel)
    assert joined is not None
    assert joined["data"]["members"] == {"alice": {"name": "Alice"}}

    joined = await bob.subscribe(channel)
    assert joined is not None
    assert joined["data"]["count"] == 2
    assert joined["data"]["me"] == {"id": "bob", "info": bob_info}
    assert joined["data"]["members"] == {"alice": {"name": "Alice"}, "bob": bob_info}
    added = await alice.expect("pusher:member_added", channel)
    assert added["data"] == {"id": "bob", "info": bob_info}

    # Bob's second connection counts once: nobody hears about it, and it sees two members.
    joined = await bob_phone.subscribe(channel)
    assert joined is not None
    assert joined["data"]["count"] == 2
    await alice.assert_no("pusher:member_added", channel, kind="event")
    assert (await alice.members(channel))["count"] == 2

    await bob_phone.disconnect()
    await alice.assert_no("pusher:member_removed", channel, kind="event")
    await bob.disconnect()
    removed = await alice.expect("pusher:member_removed", channel)
    assert removed["data"]["id"] == "bob"
    assert (await alice.members(channel)) == {
        "count": 1,
        "me": {"id": "alice", "info": {"name": "Alice"}},
        "members": {"alice": {"name": "Alice"}},
    }


async def test_private_encrypted_channel_is_decrypted_by_pusher_js_only(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    channel = "private-encrypted-diary"
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    client = await js.client("a", app, server.port, master_key=master_key)
    await client.subscribe(channel, "entry")

    reply = await js.sdk_trigger(app, server.port, channel, "entry", {"text": "dear diary"}, master_key=master_key)
    assert reply["status"] == 200, reply

    assert (await client.expect("entry", channel))["data"] == {"text": "dear diary"}
    # What the server relayed was ciphertext: it never had the key.
    wire = await client.expect("entry", channel, kind="message")
    assert set(wire["data"]) == {"nonce", "ciphertext"}
    assert "dear diary" not in str(wire["data"])
    assert master_key not in server.output()


@pytest.mark.parametrize(
    ("channel", "user"),
    [
        pytest.param("private-chat", None, id="private"),
        pytest.param("presence-chat", "alice", id="presence"),
    ],
)
async def test_client_events_reach_the_others_but_are_not_echoed(
    js: NodeDriver, server: ServerProcess, app: App, channel: str, user: str | None
) -> None:
    alice = await js.client("alice", app, server.port, user={"user_id": "alice"})
    bob = await js.client("bob", app, server.port, user={"user_id": "bob"})
    await alice.subscribe(channel, "client-typing")
    await bob.subscribe(channel, "client-typing")

    assert await alice.trigger(channel, "client-typing", {"typing": True})

    heard = await bob.expect("client-typing", channel)
    assert heard["data"] == {"typing": True}
    # pusher-js hands the sender's user_id to callbacks as metadata on presence channels only.
    assert heard["metadata"] == ({"user_id": user} if user else {})
    await alice.assert_no("client-typing", channel)


async def test_client_events_on_a_public_channel_are_refused(js: NodeDriver, server: ServerProcess, app: App) -> None:
    alice = await js.client("alice", app, server.port)
    bob = await js.client("bob", app, server.port)
    await alice.subscribe("lobby", "client-shout")
    await bob.subscribe("lobby", "client-shout")

    await alice.trigger("lobby", "client-shout", {"loud": True})

    await alice.expect_error(None, "only allowed on private and presence channels")
    await bob.assert_no("client-shout", "lobby")
    assert (await alice.info())["state"] == "connected"


async def test_subscription_count_follows_subscribers(js: NodeDriver, server: ServerProcess, app: App) -> None:
    channel = "counted"
    alice = await js.client("alice", app, server.port)
    bob = await js.client("bob", app, server.port)

    await alice.subscribe(channel)
    assert (await alice.expect("pusher:subscription_count", channel))["data"] == {"subscription_count": 1}
    await bob.subscribe(channel)
    assert (await alice.expect("pusher:subscription_count", channel))["data"] == {"subscription_count": 2}
    assert (await bob.expect("pusher:subscription_count", channel))["data"] == {"subscription_count": 2}
    await bob.unsubscribe(channel)
    assert (await alice.expect("pusher:subscription_count", channel))["data"] == {"subscription_count": 1}


async def test_cache_channel_replays_the_last_event_and_reports_a_miss_when_empty(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    channel = f"cache-ticker-{secrets.token_hex(4)}"
    early = await js.client("early", app, server.port)
    await early.subscribe(channel, "price")
    await early.expect("pusher:cache_miss", channel)

    await publish("node", js, server, app, channel, "price", {"eur": 1})
    await publish("node", js, server, app, channel, "price", {"eur": 2})
    assert (await early.expect("price", channel))["data"] == {"eur": 1}
    assert (await early.expect("price", channel))["data"] == {"eur": 2}

    late = await js.client("late", app, server.port)
    await late.subscribe(channel, "price")
    assert (await late.expect("price", channel))["data"] == {"eur": 2}
    await late.assert_no("pusher:cache_miss", channel, kind="event")
    await late.assert_no("price", channel, kind="event", within=0.2)


async def test_client_events_over_the_rate_limit_get_4301_and_the_connection_stays(
    js: NodeDriver, server: ServerProcess, app: App
) -> None:
    alice = await js.client("alice", app, server.port)
    bob = await js.client("bob", app, server.port)
    await alice.subscribe("private-burst", "client-n")
    await bob.subscribe("private-burst", "client-n")

    for n in range(12):  # the app allows 10 per second
        await alice.trigger("private-burst", "client-n", {"n": n})

    await alice.expect_error(4301)
    for n in range(10):
        assert (await bob.expect("client-n", "private-burst"))["data"] == {"n": n}
    await bob.assert_no("client-n", "private-burst", kind="event")
    assert (await alice.info())["state"] == "connected"
