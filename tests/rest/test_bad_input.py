"""Malformed REST requests: each gets its documented status and a JSON error, and triggers nothing.

"Nothing" is proven with a WebSocket client signed in as ``victim-user`` and subscribed to the channels the
bad requests aim at: after each bad request, valid sentinel events are sent, and the very next frames the
client receives must be those sentinels, on a socket still open (a bad terminate closed nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import requests

from tests.conftest import NUMERIC_APP
from tests.rest.clients import Creds, WsClient, rest, signed_query
from tests.rest.conftest import Connect
from tests.serverproc import ServerProcess

APP = Creds.of(NUMERIC_APP)
OTHER = Creds("777", "other-key", "other-secret")
DISABLED = Creds("999", "disabled-key", "disabled-secret")
VICTIM_USER = "victim-user"
VICTIM_CHANNELS = ("victim", "private-victim")
EVENTS = f"/apps/{APP.id}/events"
BATCH = f"/apps/{APP.id}/batch_events"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    apps = [
        NUMERIC_APP,
        {"id": OTHER.id, "key": OTHER.key, "secret": OTHER.secret},
        {"id": DISABLED.id, "key": DISABLED.key, "secret": DISABLED.secret, "enabled": False},
    ]
    proc = ServerProcess({"apps": apps}).start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def victim(server: ServerProcess, connect: Connect) -> WsClient:
    client = await connect(server, APP)
    await client.signin(VICTIM_USER)
    for channel in VICTIM_CHANNELS:
        await client.subscribe(channel)
    return client


def event(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"name": "bad-event", "data": "{}", "channels": list(VICTIM_CHANNELS)}
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def batch(*items: Any) -> bytes:
    return json.dumps({"batch": list(items)}).encode()


GOOD_ITEM = {"name": "bad-event", "data": "{}", "channel": "victim"}


@dataclass(frozen=True)
class Bad:
    status: int
    error: str  # a substring of the JSON error message
    body: bytes = b""
    method: str = "POST"
    path: str = EVENTS
    creds: Creds = APP
    secret: str | None = None  # sign with this secret instead of the creds'
    signed_body: bytes | None = None  # sign this body but send ``body``
    signed_path: str | None = None
    timestamp_offset: int = 0
    unsigned: bool = False
    skip_md5: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # added to the query after signing
    signed_params: dict[str, str] = field(default_factory=dict)

    def url(self, base: str) -> str:
        if self.unsigned:
            return base + self.path
        signed_body = self.body if self.signed_body is None else self.signed_body
        query = signed_query(
            self.method,
            self.signed_path or self.path,
            key=self.creds.key,
            secret=self.secret or self.creds.secret,
            params=self.signed_params,
            body=signed_body,
            timestamp=int(time.time()) + self.timestamp_offset,
            body_md5=False if self.skip_md5 else None,
        )
        return f"{base}{self.path}?{urlencode({**query, **self.extra})}"


CASES = [
    # -- the body of POST /events -------------------------------------------------------------------------
    pytest.param(Bad(400, "not valid JSON", b'{"name": "bad-event",'), id="bad-json"),
    pytest.param(Bad(400, "not valid JSON", b""), id="empty-body"),
    pytest.param(Bad(400, "not valid JSON", b"\xff\xfe{}"), id="not-utf8"),
    pytest.param(Bad(400, "not valid JSON", b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"), id="nested-50000-deep"),
    pytest.param(Bad(400, "must be a JSON object", b'["victim"]'), id="body-not-an-object"),
    pytest.param(Bad(400, "Invalid event name", event(name=...)), id="missing-name"),
    pytest.param(Bad(400, "data must be a string", event(data=...)), id="missing-data"),
    pytest.param(Bad(400, "Missing channels", event(channels=...)), id="missing-channels"),
    pytest.param(Bad(400, "Invalid event name", event(name=42)), id="name-not-a-string"),
    pytest.param(Bad(400, "data must be a string", event(data={"a": 1})), id="data-not-a-string"),
    pytest.param(Bad(400, "channels must be a non-empty array", event(channels="victim")), id="channels-a-string"),
    pytest.param(Bad(400, "channels must be a non-empty array", event(channels=[])), id="channels-empty"),
    pytest.param(Bad(400, "must be strings", event(channels=["victim", 7])), id="channel-not-a-string"),
    pytest.param(Bad(413, "over 10 KB", event(data="x" * 10_241)), id="data-over-10kb"),
    pytest.param(Bad(413, "over 10 KB", event(data="é" * 5_121)), id="data-over-10kb-in-utf8-bytes"),
    pytest.param(
        Bad(400, "Too many channels", event(channels=[*VICTIM_CHANNELS, *(f"c{n}" for n in range(99))])),
        id="101-channels",
    ),
    pytest.param(Bad(400, "Invalid channel name", event(channels=["victim", "bad channel"])), id="bad-channel-name"),
    pytest.param(Bad(400, "Invalid channel name", event(channels=["victim", "a" * 201])), id="channel-name-201"),
    pytest.param(Bad(400, "Invalid channel name", event(channels=["victim", "#victim"])), id="reserved-hash-channel"),
    pytest.param(
        Bad(400, "Invalid channel name", event(channels=[f"#server-to-user-{VICTIM_USER}", "bad channel"])),
        id="send-to-user-with-a-bad-second-channel",
    ),
    pytest.param(
        Bad(400, "Encrypted channels", event(channels=["victim", "private-encrypted-victim"])),
        id="encrypted-with-another-channel",
    ),
    pytest.param(Bad(400, "Invalid event name", event(name="has space")), id="event-name-with-space"),
    pytest.param(Bad(400, "Invalid event name", event(name="e" * 201)), id="event-name-201"),
    pytest.param(
        Bad(400, "not valid Unicode", b'{"name":"bad-event","channels":["victim"],"data":"\\ud800"}'),
        id="data-with-a-lone-surrogate",
    ),
    pytest.param(Bad(400, "Invalid socket_id", event(socket_id="abc")), id="bad-socket-id"),
    pytest.param(Bad(400, "Invalid socket_id", event(socket_id=123.456)), id="socket-id-a-number"),
    pytest.param(Bad(400, "Unsupported info attribute", event(info="members")), id="unknown-info"),
    pytest.param(Bad(400, "Unsupported info attribute", event(info="user_count,")), id="info-trailing-comma"),
    pytest.param(Bad(400, "only available for presence", event(info="user_count")), id="user-count-on-public"),
    pytest.param(Bad(400, "info must be", event(info=["user_count"])), id="info-an-array"),
    # -- batch_events ---------------------------------------------------------------------------------------
    pytest.param(Bad(400, "Batch too large", batch(*[GOOD_ITEM] * 11), path=BATCH), id="batch-of-11"),
    pytest.param(
        Bad(400, "batch[1]: Invalid event name", batch(GOOD_ITEM, {**GOOD_ITEM, "name": "a b"}), path=BATCH),
        id="batch-good-then-bad",
    ),
    pytest.param(
        Bad(413, "batch[0]: Event data is over", batch({**GOOD_ITEM, "data": "x" * 10_241}), path=BATCH),
        id="batch-item-over-10kb",
    ),
    pytest.param(Bad(400, "Missing channel", batch({"name": "e", "data": "x"}), path=BATCH), id="batch-no-channel"),
    pytest.param(
        Bad(400, "Missing channel", batch({"name": "e", "data": "x", "channels": ["victim"]}), path=BATCH),
        id="batch-item-with-channels-not-channel",
    ),
    pytest.param(Bad(400, "non-empty array", b'{"batch": {}}', path=BATCH), id="batch-not-an-array"),
    pytest.param(Bad(400, "non-empty array", b'{"batch": []}', path=BATCH), id="batch-empty"),
    pytest.param(Bad(400, "must be an object", batch(GOOD_ITEM, "x"), path=BATCH), id="batch-item-a-string"),
    # -- signing --------------------------------------------------------------------------------------------
    pytest.param(Bad(401, "Missing parameter: auth_key", event(), unsigned=True), id="unsigned"),
    pytest.param(Bad(401, "Invalid signature", event(), secret=OTHER.secret), id="another-apps-secret"),
    pytest.param(Bad(401, "Invalid auth_key", event(), creds=OTHER, path=EVENTS), id="another-apps-key-and-secret"),
    pytest.param(Bad(401, "Timestamp expired", event(), timestamp_offset=-601), id="timestamp-601s-old"),
    pytest.param(Bad(401, "Timestamp expired", event(), timestamp_offset=601), id="timestamp-601s-ahead"),
    pytest.param(
        Bad(401, "body_md5 does not match", event(name="altered"), signed_body=event()), id="body-altered-after-signing"
    ),
    pytest.param(Bad(401, "Missing parameter: body_md5", event(), skip_md5=True), id="no-body-md5"),
    pytest.param(Bad(401, "Invalid signature", event(), signed_path=BATCH), id="signed-for-another-path"),
    pytest.param(Bad(401, "Invalid signature", event(), extra={"socket_id": "1.1"}), id="param-added-after-signing"),
    pytest.param(
        Bad(401, "Unsupported auth_version", event(), signed_params={"auth_version": "2.0"}), id="auth-version-2"
    ),
    # -- apps and routes ------------------------------------------------------------------------------------
    pytest.param(Bad(404, "App not found", event(), path="/apps/424242/events"), id="unknown-app"),
    pytest.param(
        Bad(403, "App is disabled", event(), path=f"/apps/{DISABLED.id}/events", creds=DISABLED), id="disabled-app"
    ),
    pytest.param(Bad(404, "Not found", event(), path=f"/apps/{APP.id}/nope"), id="unknown-path"),
    pytest.param(Bad(405, "Method not allowed", b"", method="GET"), id="get-on-events"),
    pytest.param(Bad(413, "Request body too large", b"x" * (1024 * 1024 + 1)), id="body-over-1mb"),
    # -- the other endpoints --------------------------------------------------------------------------------
    pytest.param(
        Bad(
            400,
            "takes no parameters",
            b'{"force": true}',
            path=f"/apps/{APP.id}/users/{VICTIM_USER}/terminate_connections",
        ),
        id="terminate-with-parameters",
    ),
    pytest.param(
        Bad(
            400,
            "not valid JSON",
            b"\r\n\r\n",
            path=f"/apps/{APP.id}/users/{VICTIM_USER}/terminate_connections",
        ),
        id="terminate-with-a-blank-body",
    ),
    pytest.param(
        Bad(
            401,
            "Missing parameter",
            b"{}",
            path=f"/apps/{APP.id}/users/{VICTIM_USER}/terminate_connections",
            unsigned=True,
        ),
        id="terminate-unsigned",
    ),
    pytest.param(
        Bad(
            401,
            "Invalid signature",
            b"{}",
            path=f"/apps/{APP.id}/users/{VICTIM_USER}/terminate_connections",
            secret=OTHER.secret,
        ),
        id="terminate-another-apps-secret",
    ),
    pytest.param(
        Bad(400, "Invalid user id", b"", path=f"/apps/{APP.id}/users/bad!user/terminate_connections"),
        id="terminate-bad-user-id",
    ),
    pytest.param(
        Bad(400, "Invalid channel name", method="GET", path=f"/apps/{APP.id}/channels/bad!name"), id="get-bad-channel"
    ),
    pytest.param(
        Bad(
            400,
            "Unsupported info attribute",
            method="GET",
            path=f"/apps/{APP.id}/channels/victim",
            signed_params={"info": "x"},
        ),
        id="get-channel-unknown-info",
    ),
    pytest.param(
        Bad(
            400,
            "only available for cache channels",
            method="GET",
            path=f"/apps/{APP.id}/channels/victim",
            signed_params={"info": "cache"},
        ),
        id="get-channel-cache-on-public",
    ),
    pytest.param(
        Bad(400, "presence channels", method="GET", path=f"/apps/{APP.id}/channels/victim/users"), id="users-of-public"
    ),
    pytest.param(
        Bad(
            400,
            "filter_by_prefix=presence-",
            method="GET",
            path=f"/apps/{APP.id}/channels",
            signed_params={"info": "user_count"},
        ),
        id="channels-user-count-without-prefix",
    ),
    pytest.param(
        Bad(
            400,
            "filter_by_prefix must",
            method="GET",
            path=f"/apps/{APP.id}/channels",
            signed_params={"filter_by_prefix": "bad!"},
        ),
        id="channels-bad-prefix",
    ),
]


async def _send(http: aiohttp.ClientSession, server: ServerProcess, case: Bad) -> tuple[int, str, Any]:
    async with http.request(case.method, case.url(server.url), data=case.body) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def _sentinels_arrive_first(http: aiohttp.ClientSession, server: ServerProcess, victim: WsClient) -> None:
    status, _ = await rest(
        http,
        server.url,
        "POST",
        EVENTS,
        APP,
        body={"name": "sentinel", "data": "{}", "channels": list(VICTIM_CHANNELS)},
    )
    assert status == 200
    to_user = f"#server-to-user-{VICTIM_USER}"
    status, _ = await rest(
        http, server.url, "POST", EVENTS, APP, body={"name": "sentinel", "data": "{}", "channel": to_user}
    )
    assert status == 200
    received = [await victim.next_event() for _ in range(3)]
    assert [(f.get("channel"), f["event"]) for f in received] == [
        *((channel, "sentinel") for channel in VICTIM_CHANNELS),
        (to_user, "sentinel"),
    ]


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_gets_its_status_and_a_json_error_and_triggers_nothing(
    server: ServerProcess, http: aiohttp.ClientSession, victim: WsClient, case: Bad
) -> None:
    status, content_type, body = await _send(http, server, case)

    assert (status, content_type) == (case.status, "application/json"), body
    assert list(body) == ["error"]
    assert case.error in body["error"]
    await _sentinels_arrive_first(http, server, victim)


async def test_the_same_requests_signed_correctly_do_publish(
    server: ServerProcess, http: aiohttp.ClientSession, victim: WsClient
) -> None:
    """The control for the table: the victim and the sentinels would see a published event."""
    status, body = await rest(http, server.url, "POST", EVENTS, APP, body=json.loads(event()))

    assert (status, body) == (200, {})
    assert [(await victim.next_event())["event"] for _ in VICTIM_CHANNELS] == ["bad-event"] * len(VICTIM_CHANNELS)
    await _sentinels_arrive_first(http, server, victim)


async def test_a_body_arriving_in_pieces_is_read_whole(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    """The body is checked against body_md5 and the 10 KB limit only once all of it has arrived."""
    body = event(data="x" * 10_241)

    async def pieces() -> Any:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]
            await asyncio.sleep(0.01)

    url = Bad(413, "", body).url(server.url)
    async with http.post(url, data=pieces()) as resp:
        assert (resp.status, await resp.json()) == (413, {"error": "Event data is over 10 KB"})
    assert hashlib.md5(body).hexdigest() in url


async def test_a_body_that_is_not_the_gzip_it_claims_is_a_json_400(
    server: ServerProcess, http: aiohttp.ClientSession, victim: WsClient
) -> None:
    """Sent in one write with ``requests`` (headers and a small body together): the server may answer and
    close before an aiohttp client has written the body."""
    body = event()
    url = Bad(400, "", body).url(server.url)

    response = await asyncio.to_thread(requests.post, url, data=body, headers={"Content-Encoding": "gzip"}, timeout=10)

    assert (response.status_code, response.json()) == (400, {"error": "Request body could not be decoded"})
    await _sentinels_arrive_first(http, server, victim)
