"""Who may open the console: anyone on a loopback listener, only holders of a secret or the admin token
on any other (this test binds 0.0.0.0 and still connects through 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from yarl import URL

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.debug.sse import Stream
from tests.serverproc import ServerProcess

ADMIN_TOKEN = "admin-token-for-tests-0123"
BEARER_APP = {"Authorization": f"Bearer {DEFAULT_APP['secret']}"}
BEARER_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def exposed() -> Iterator[ServerProcess]:
    """The console on a server listening on every interface."""
    config = {"host": "0.0.0.0", "apps": [DEFAULT_APP, NUMERIC_APP], "debug_console": True, "admin_token": ADMIN_TOKEN}
    proc = ServerProcess(config).start()
    yield proc
    proc.cleanup()


async def test_on_a_loopback_listener_the_console_is_open(console: ServerProcess, http: aiohttp.ClientSession) -> None:
    async with http.get(console.url + "/debug") as response:
        assert response.status == 200
        assert "Debug Console" in await response.text()
    async with http.get(console.url + "/debug/session") as response:
        body = await response.json()
        assert [a["id"] for a in body["apps"]] == ["100001", "12345"]
        assert body["login"] is False
        assert "secret" not in str(body)


async def test_a_loopback_listener_refuses_requests_for_a_foreign_host_name(
    console: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A page on another site that rebinds its DNS name to 127.0.0.1 still sends its own name as Host."""
    foreign = {"Host": f"attacker.example:{console.port}"}
    async with http.get(console.url + "/debug/session", headers=foreign) as response:
        assert response.status == 401
    async with http.get(console.url + "/debug/stream?app=100001", headers=foreign) as response:
        assert response.status == 401
    async with http.get(console.url + "/debug/session", headers={"Host": f"localhost:{console.port}"}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/debug", id="page"),
        pytest.param("GET", "/debug/session", id="session"),
        pytest.param("GET", "/debug/stream?app=100001", id="stream"),
        pytest.param("POST", "/debug/apps/100001/events", id="event-creator"),
    ],
)
async def test_an_anonymous_request_is_refused_off_loopback(
    exposed: ServerProcess, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    body = {"channel": "c", "name": "e", "data": "d"}
    async with http.request(method, exposed.url + path, json=body if method == "POST" else None) as response:
        assert response.status == 401
        text = await response.text()
    assert "app-key" not in text  # not even the app list
    assert "Debug console: authentication required" in text or 'name="token"' in text


async def test_the_anonymous_page_is_a_sign_in_form_and_the_assets_are_public(
    exposed: ServerProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(exposed.url + "/debug") as response:
        assert response.status == 401
        assert 'action="/debug/login"' in await response.text()
    async with http.get(exposed.url + "/debug/debug.js") as response:
        assert response.status == 200  # code only: nothing about any app
        assert response.content_type == "text/javascript"


async def test_an_app_secret_opens_that_app_only(exposed: ServerProcess, http: aiohttp.ClientSession) -> None:
    async with http.get(exposed.url + "/debug/session", headers=BEARER_APP) as response:
        assert response.status == 200
        assert [a["id"] for a in (await response.json())["apps"]] == ["100001"]
    stream = await Stream.open(http, exposed.url, headers=BEARER_APP)
    stream.close()
    async with http.get(exposed.url + "/debug/stream?app=12345", headers=BEARER_APP) as response:
        assert response.status == 403
    url = exposed.url + "/debug/apps/100001/events"
    async with http.post(url, json={"channel": "c", "name": "e", "data": "d"}, headers=BEARER_APP) as response:
        assert response.status == 200
    async with http.post(url.replace("100001", "12345"), json={}, headers=BEARER_APP) as response:
        assert response.status == 403


async def test_the_admin_token_opens_every_app(exposed: ServerProcess, http: aiohttp.ClientSession) -> None:
    async with http.get(exposed.url + "/debug/session", headers=BEARER_ADMIN) as response:
        assert [a["id"] for a in (await response.json())["apps"]] == ["100001", "12345"]
    for app in ("100001", "12345"):
        stream = await Stream.open(http, exposed.url, app=app, headers=BEARER_ADMIN)
        assert (await stream.next())["app_id"] == app
        stream.close()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("wrong", id="unknown"),
        pytest.param(DEFAULT_APP["key"], id="app-key-is-public"),
        pytest.param(DEFAULT_APP["secret"] + "x", id="secret-plus-one"),
        pytest.param("", id="empty"),
    ],
)
async def test_anything_else_is_refused(exposed: ServerProcess, http: aiohttp.ClientSession, token: str) -> None:
    async with http.get(exposed.url + "/debug/session", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 401


async def test_signing_in_once_sets_a_session_cookie_for_the_page_and_the_stream(exposed: ServerProcess) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(exposed.url + "/debug/login", data={"token": "nope"}) as response:
            assert response.status == 401
            assert "Not accepted" in await response.text()
        async with browser.post(exposed.url + "/debug/login", data={"token": DEFAULT_APP["secret"]}) as response:
            assert response.status == 200  # followed the 303 to the page
            assert "Debug Console" in await response.text()
            assert str(response.url).endswith("/debug")
        cookie = browser.cookie_jar.filter_cookies(URL(exposed.url + "/debug"))["sockless_debug"]
        assert DEFAULT_APP["secret"] not in cookie.value
        async with browser.get(exposed.url + "/debug/session") as response:
            assert [a["id"] for a in (await response.json())["apps"]] == ["100001"]
        stream = await Stream.open(browser, exposed.url)
        stream.close()
        async with browser.post(exposed.url + "/debug/logout") as response:
            assert response.status == 401  # back on the sign-in form
        async with browser.get(exposed.url + "/debug/session") as response:
            assert response.status == 401


async def test_a_forged_or_widened_session_cookie_is_refused(exposed: ServerProcess) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(exposed.url + "/debug/login", data={"token": DEFAULT_APP["secret"]}):
            pass
        value = browser.cookie_jar.filter_cookies(URL(exposed.url + "/debug"))["sockless_debug"].value
        ids, expires, mac = value.split("|")
        for forged in (f"100001,12345|{expires}|{mac}", f"{ids}|{int(expires) + 10**6}|{mac}", f"{ids}|{expires}|0"):
            async with aiohttp.ClientSession() as other:
                headers = {"Cookie": f"sockless_debug={forged}"}
                async with other.get(exposed.url + "/debug/session", headers=headers) as response:
                    assert response.status == 401, forged


async def test_cross_site_sign_in_and_password_guessing_are_refused(exposed: ServerProcess) -> None:
    # From an address of its own (all of 127/8 is loopback), so its attempts count against no other test.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.7", 0))
    async with aiohttp.ClientSession(connector=connector) as client:
        headers = {"Origin": "http://evil.example"}
        data = {"token": DEFAULT_APP["secret"]}
        async with client.post(exposed.url + "/debug/login", data=data, headers=headers) as response:
            assert response.status == 403
        statuses = []
        for _ in range(12):
            async with client.post(exposed.url + "/debug/login", data={"token": "guess"}) as response:
                statuses.append(response.status)
        assert statuses[-1] == 429
        async with client.post(exposed.url + "/debug/login", data=data) as response:
            assert response.status == 429  # even the right secret waits out the window
