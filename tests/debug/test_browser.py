"""The console page in a real browser (Chromium, headless, driven by playwright-core) against the real
server, with real pusher-js clients and a real webhook receiver.

``SOCKLESS_UPDATE_SCREENSHOT=1`` also writes the page with its live traffic to docs/debug-console.png.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEFAULT_APP
from tests.debug.browser import Browser, browser_missing
from tests.e2e.jsdriver import App, NodeDriver
from tests.serverproc import ROOT, ServerProcess
from tests.webhooks.support import Receiver

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=f"browser tests: {browser_missing()}")

SCREENSHOT = ROOT / "docs" / "debug-console.png"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    page = await Browser.start()
    try:
        yield page
    finally:
        await page.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = await Receiver().start()
    hooks.scripts["/down"] = [503] * 1000  # a receiver that is down: failed deliveries, retried
    try:
        yield hooks
    finally:
        await hooks.stop()


@pytest.fixture
def hooked(start_server: Callable[..., ServerProcess], receiver: Receiver) -> ServerProcess:
    """The console on, and the default app's webhooks going to a working and a failing receiver."""
    app: dict[str, Any] = {
        **DEFAULT_APP,
        "webhooks": [
            {"url": receiver.url("/hook")},
            {
                "url": receiver.url("/down"),
                "event_types": ["channel_occupied"],
                "filter": {"channel_prefix": "presence-"},
            },
        ],
    }
    return start_server({"apps": [app], "debug_console": True, "webhooks": {"delay_seconds": 0.5}})


LOG = "#log tbody tr"


async def test_the_page_follows_clients_publishes_through_the_event_creator_and_shows_webhooks(
    hooked: ServerProcess, browser: Browser, js: NodeDriver, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    assert await browser.open(f"{hooked.url}/debug") == 200
    await browser.wait("#status", "live")
    await browser.wait("#no-channels")

    # A pusher-js client connects: its row appears, and the counter moves.
    alice = await js.client("alice", app, hooked.port, user={"user_id": "alice", "user_info": {"name": "Alice"}})
    alice_id = await alice.socket_id()
    await browser.wait(f'{LOG}[data-type="connection"]', alice_id)
    await browser.wait("#connections", "1")

    # It subscribes: the channel appears with its count, which follows a second subscriber.
    await alice.subscribe("orders", "created")
    await browser.wait(f'{LOG}[data-type="subscribed"]', "orders")
    await browser.wait('#channels tr[data-channel="orders"] td.count', "1")
    bob = await js.client("bob", app, hooked.port, user={"user_id": "bob", "user_info": {"name": "Bob"}})
    await bob.subscribe("orders", "created")
    await browser.wait('#channels tr[data-channel="orders"] td.count', "2")
    await browser.wait("#channel-count", "1")

    # The Event Creator publishes; both clients receive it, and the log shows the API message.
    await browser.fill("#creator-channel", "orders")
    await browser.fill("#creator-event", "created")
    await browser.fill("#creator-data", '{"order": 42, "total": "19.90"}')
    await browser.click('#creator button[type="submit"]')
    await browser.wait("#creator-result", "200")
    for client in (alice, bob):
        received = await client.expect("created", "orders")
        assert received["data"] == {"order": 42, "total": "19.90"}
    await browser.wait(f'{LOG}[data-type="api_message"]', "created")

    # The channel_occupied webhook was delivered: the row shows its status, and the receiver got it.
    await browser.wait(f'{LOG}[data-type="webhook"]', "channel_occupied@orders")
    await browser.wait(f'{LOG}[data-type="webhook"]', "delivered: HTTP 200")
    assert any(e["channel"] == "orders" for r in receiver.requests if r.path == "/hook" for e in r.events)

    # Presence members, client events, an auth failure and a failing webhook target, as Pusher's console shows.
    await alice.subscribe("presence-lobby")
    await bob.subscribe("presence-lobby")
    await browser.wait('#channels tr[data-channel="presence-lobby"] .member', "alice")
    await browser.wait('#channels tr[data-channel="presence-lobby"] .member', "bob")
    assert await bob.trigger("presence-lobby", "client-typing", {"typing": True})
    await browser.wait(f'{LOG}[data-type="client_event"]', "client-typing")
    mallory = await js.client("mallory", app, hooked.port, wrong_secret=True)
    await mallory.subscribe("private-vault", succeed=False)
    await browser.wait(f'{LOG}[data-type="error"]', "Invalid signature")
    await browser.wait(f'{LOG}[data-type="webhook"]', "failed: HTTP 503")

    # A disconnect, with its close code.
    await mallory.disconnect()
    await browser.wait(f'{LOG}[data-type="disconnection"]', "close code")
    await browser.wait("#connections", "2")

    await browser.screenshot(tmp_path / "console.png")
    assert (tmp_path / "console.png").stat().st_size > 10_000
    if os.environ.get("SOCKLESS_UPDATE_SCREENSHOT"):
        await browser.screenshot(SCREENSHOT)
    assert not browser.page_errors(), browser.page_log()
    page = "\n".join(await browser.texts("body"))
    assert DEFAULT_APP["secret"] not in page


async def test_the_log_filters_by_kind_and_text(
    console: ServerProcess, browser: Browser, js: NodeDriver, app: App
) -> None:
    await browser.open(f"{console.url}/debug#100001")
    await browser.wait("#status", "live")
    client = await js.client("filtered", app, console.port)
    await client.subscribe("alpha")
    await client.subscribe("beta")
    await browser.wait(f'{LOG}[data-type="subscribed"]', "beta")

    await browser.fill("#filter", "alpha")
    await browser.wait(f'{LOG}[data-type="subscribed"]', "alpha")
    assert await browser.count(f'{LOG}[data-type="subscribed"]:visible', "beta") == 0
    await browser.fill("#filter", "")
    await browser.check('#kinds input[value="subscription"]', on=False)
    assert await browser.count(f'{LOG}[data-type="subscribed"]:visible') == 0
    await browser.wait(f'{LOG}[data-type="connection"]', await client.socket_id())
    await browser.check('#kinds input[value="subscription"]', on=True)
    await browser.wait(f'{LOG}[data-type="subscribed"]', "beta")


async def test_off_loopback_the_page_asks_for_a_secret_first(
    start_server: Callable[..., ServerProcess], browser: Browser
) -> None:
    exposed = start_server({"host": "0.0.0.0", "apps": [DEFAULT_APP], "debug_console": True})
    assert await browser.open(f"{exposed.url}/debug") == 401
    await browser.wait("#login")
    await browser.fill('input[name="token"]', "not-it")
    await browser.click('#login button[type="submit"]')
    await browser.wait("#note", "Not accepted")
    await browser.fill('input[name="token"]', DEFAULT_APP["secret"])
    await browser.click('#login button[type="submit"]')
    await browser.wait("#status", "live")
    assert await browser.texts("#app option") == ["100001 (key app-key)"]
    await browser.wait("#logout button")
