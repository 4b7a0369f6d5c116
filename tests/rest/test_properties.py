"""Property-based tests of the REST surface against the live server: random bodies, query strings, headers.

Beyond "never 5xx, always JSON with a documented status", the body and query properties compare the server
with an oracle written here from docs/sources.md#rest-api-and-request-signing (not from the server code): a
request is answered 200 exactly when the oracle says it is valid, and 413 only when some event's data is over 10 KB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import NUMERIC_APP
from tests.rest.clients import Creds, signed_query
from tests.serverproc import ServerProcess

APP = Creds.of(NUMERIC_APP)
AUTH_PARAMS = {"auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5"}
NAME = re.compile(r"[-a-zA-Z0-9_=@,.;]+")
SOCKET_ID = re.compile(r"[0-9]+\.[0-9]+")
DATA_LIMIT = 10 * 1024
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [NUMERIC_APP]}).start()
    yield proc
    proc.cleanup()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# -- the oracle -------------------------------------------------------------------------------------------


def _channel_ok(name: object, *, allow_server_to_user: bool = True) -> bool:
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        return False
    if allow_server_to_user and name.startswith("#server-to-user-"):
        return NAME.fullmatch(name[len("#server-to-user-") :]) is not None
    return NAME.fullmatch(name) is not None


def _utf8_len(text: str) -> int | None:
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


def _info_ok(info: object, allowed: set[str], channels: list[str]) -> bool:
    if info is None:
        return True
    if not isinstance(info, str):
        return False
    attrs = info.split(",")
    if not set(attrs) <= allowed:
        return False
    presence = [c.startswith("presence-") for c in channels]
    if "user_count" in attrs and not all(presence):
        return False
    return not ("subscription_count" in attrs and any(presence))


def event_ok(event: object, *, batch: bool) -> bool:
    """Pusher's rules for one event (docs/sources.md#identifiers-and-limits)."""
    if not isinstance(event, dict):
        return False
    name, data = event.get("name"), event.get("data")
    if not isinstance(name, str) or not 0 < len(name) <= 200 or re.search(r"\s", name) or _utf8_len(name) is None:
        return False
    if not isinstance(data, str):
        return False
    size = _utf8_len(data)
    if size is None or size > DATA_LIMIT:
        return False
    if batch:
        if "channel" not in event:
            return False
        channels = [event["channel"]]
    elif ("channels" in event) == ("channel" in event):
        return False
    elif "channels" in event:
        channels = event["channels"]
        if not isinstance(channels, list) or not 0 < len(channels) <= 100:
            return False
    else:
        channels = [event["channel"]]
    if not all(_channel_ok(c) for c in channels):
        return False
    if len(channels) > 1 and any(c.startswith("private-encrypted-") for c in channels):
        return False
    socket_id = event.get("socket_id")
    if socket_id is not None and not (isinstance(socket_id, str) and SOCKET_ID.fullmatch(socket_id)):
        return False
    return _info_ok(event.get("info"), {"user_count", "subscription_count"}, channels)


def data_over_limit(event: object) -> bool:
    data = event.get("data") if isinstance(event, dict) else None
    return isinstance(data, str) and (_utf8_len(data) or 0) > DATA_LIMIT


# -- strategies -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
channel_names = st.one_of(
    st.from_regex(r"\A[-a-zA-Z0-9_=@,.;]{1,12}\Z"),
    st.sampled_from(["presence-room", "private-encrypted-x", "cache-x", "#server-to-user-u1", "#x", "a" * 200]),
    st.sampled_from(["a" * 201, "bad name", "", "private-encrypted-y", "presence-other"]),
    st.text(max_size=12),
)
event_names = st.one_of(st.from_regex(r"\A[a-z:_-]{1,12}\Z"), st.text(max_size=12), st.just("e" * 201))
event_data = st.one_of(
    st.text(max_size=20),
    st.integers(DATA_LIMIT - 2, DATA_LIMIT + 2).map(lambda n: "x" * n),
    st.integers(DATA_LIMIT // 2 - 1, DATA_LIMIT // 2 + 1).map(lambda n: "é" * n),
)
info_values = st.sampled_from(["user_count", "subscription_count", "user_count,subscription_count", "", "cache", "x"])
random_events = st.fixed_dictionaries(
    {},
    optional={
        "name": event_names | json_values,
        "data": event_data | json_values,
        "channels": st.lists(channel_names, max_size=4)
        | st.lists(channel_names, min_size=99, max_size=102)
        | json_values,
        "channel": channel_names | json_values,
        "socket_id": st.from_regex(r"\A[0-9]{1,4}\.[0-9]{1,4}\Z") | st.text(max_size=8) | json_values,
        "info": info_values | json_values,
    },
)
good_channels = st.from_regex(r"\A[-a-zA-Z0-9_=@,.;]{1,12}\Z") | st.sampled_from(
    ["presence-room", "cache-x", "#server-to-user-u1"]
)
good_fields = {
    "name": st.from_regex(r"\A[a-z:_-]{1,12}\Z"),
    "data": st.text(max_size=20) | event_data,
}
good_optional = {"socket_id": st.from_regex(r"\A[0-9]{1,4}\.[0-9]{1,4}\Z"), "info": info_values}
good_events = st.fixed_dictionaries(
    {**good_fields, "channels": st.lists(good_channels, min_size=1, max_size=3)}, optional=good_optional
) | st.fixed_dictionaries({**good_fields, "channel": good_channels}, optional=good_optional)
good_batch_events = st.fixed_dictionaries(
    {"name": good_fields["name"], "data": st.text(max_size=20), "channel": good_channels},
    optional={"socket_id": good_optional["socket_id"]},
)


def _mutated(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mostly valid event with one field replaced by anything or removed: the edges of validity."""
    keys = st.sampled_from(["name", "data", "channels", "channel", "socket_id", "info"])
    replaced = st.tuples(base, keys, json_values | channel_names | event_data).map(lambda t: {**t[0], t[1]: t[2]})
    removed = st.tuples(base, keys).map(lambda t: {k: v for k, v in t[0].items() if k != t[1]})
    return replaced | removed


events = good_events | _mutated(good_events) | random_events
batch_events = good_batch_events | _mutated(good_batch_events) | random_events
query_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


def _post(session: requests.Session, server: ServerProcess, path: str, body: bytes) -> requests.Response:
    query = signed_query("POST", path, key=APP.key, secret=APP.secret, body=body)
    return session.post(f"{server.url}{path}?{urlencode(query)}", data=body, timeout=10)


def _get(session: requests.Session, server: ServerProcess, path: str, params: dict[str, str]) -> requests.Response:
    query = signed_query("GET", path, key=APP.key, secret=APP.secret, params=params)
    return session.get(f"{server.url}{quote(path)}?{urlencode(query)}", timeout=10)


def _json_error(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["error"] and isinstance(body["error"], str), body
    return body


# -- properties -------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(payload=events)
def test_events_is_200_exactly_for_valid_events(
    server: ServerProcess, session: requests.Session, payload: dict[str, Any]
) -> None:
    response = _post(session, server, f"/apps/{APP.id}/events", json.dumps(payload).encode())
    event(f"status {response.status_code}")

    if event_ok(payload, batch=False):
        assert response.status_code == 200, response.text
        assert set(response.json()) <= {"channels"}
    else:
        assert response.status_code in (400, 413), response.text
        _json_error(response)
        if response.status_code == 413:
            assert data_over_limit(payload)


@PROPERTY_SETTINGS
@given(
    batch=st.lists(good_batch_events, min_size=1, max_size=10)
    | st.lists(batch_events, min_size=1, max_size=11)
    | st.lists(random_events, max_size=12)
    | json_values
)
def test_batch_events_is_200_exactly_when_every_event_is_valid(
    server: ServerProcess, session: requests.Session, batch: Any
) -> None:
    response = _post(session, server, f"/apps/{APP.id}/batch_events", json.dumps({"batch": batch}).encode())
    event(f"status {response.status_code}")

    valid = isinstance(batch, list) and 0 < len(batch) <= 10 and all(event_ok(e, batch=True) for e in batch)
    if valid:
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer == {} or len(answer["batch"]) == len(batch)
    else:
        assert response.status_code in (400, 413), response.text
        _json_error(response)
        if response.status_code == 413:
            assert any(data_over_limit(e) for e in batch)


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_gets_a_json_answer_with_a_documented_status(
    server: ServerProcess, session: requests.Session, body: bytes
) -> None:
    for path in (
        f"/apps/{APP.id}/events",
        f"/apps/{APP.id}/batch_events",
        f"/apps/{APP.id}/users/u1/terminate_connections",
    ):
        response = _post(session, server, path, body)
        event(f"{path.rsplit('/', 1)[-1]} status {response.status_code}")
        assert response.status_code in (200, 400, 413), response.text
        if response.status_code != 200:
            _json_error(response)


@PROPERTY_SETTINGS
@given(
    prefix=st.none()
    | st.sampled_from(["", "presence-", "presence-r", "private-", "cache-", "bad prefix"])
    | query_text,
    info=st.none() | info_values | query_text,
    extra=st.dictionaries(
        query_text.filter(lambda k: k.lower() not in AUTH_PARAMS | {"info", "filter_by_prefix"}), query_text, max_size=3
    ),
)
def test_channels_query_is_200_exactly_when_valid(
    server: ServerProcess, session: requests.Session, prefix: str | None, info: str | None, extra: dict[str, str]
) -> None:
    params = {
        **extra,
        **({} if prefix is None else {"filter_by_prefix": prefix}),
        **({} if info is None else {"info": info}),
    }
    response = _get(session, server, f"/apps/{APP.id}/channels", params)
    event(f"status {response.status_code}")

    p = prefix or ""
    prefix_ok = len(p) <= 200 and re.fullmatch(r"[-a-zA-Z0-9_=@,.;]*", p) is not None
    is_presence = p.startswith("presence-")
    attrs = [] if info is None else info.split(",")
    info_ok = set(attrs) <= {"user_count", "subscription_count"} and not (
        ("user_count" in attrs and not is_presence) or ("subscription_count" in attrs and is_presence)
    )
    if prefix_ok and info_ok:
        assert response.status_code == 200, response.text
        assert all(name.startswith(p) for name in response.json()["channels"])
    else:
        assert response.status_code == 400, response.text
        _json_error(response)


@PROPERTY_SETTINGS
@given(channel=channel_names, info=st.none() | info_values | st.just("cache,subscription_count") | query_text)
def test_channel_query_is_200_exactly_when_the_attributes_fit_the_channel(
    server: ServerProcess, session: requests.Session, channel: str, info: str | None
) -> None:
    if "/" in channel or channel in (".", ".."):
        return  # a different path altogether, covered by the path property below
    response = _get(session, server, f"/apps/{APP.id}/channels/{channel}", {} if info is None else {"info": info})
    event(f"status {response.status_code}")

    attrs = [] if info is None else info.split(",")
    presence, cache = (
        channel.startswith("presence-"),
        channel.startswith(("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")),
    )
    valid = (
        _channel_ok(channel, allow_server_to_user=False)
        and set(attrs) <= {"user_count", "subscription_count", "cache"}
        and not ("user_count" in attrs and not presence)
        and not ("subscription_count" in attrs and presence)
        and not ("cache" in attrs and not cache)
    )
    if valid:
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"occupied", *attrs}
    else:
        assert response.status_code in (400, 404), response.text
        _json_error(response)


safe_header_names = st.from_regex(r"\AX-[A-Za-z0-9-]{1,16}\Z") | st.sampled_from(
    ["Content-Type", "Accept", "User-Agent", "Authorization", "X-Pusher-Library", "Origin", "Cookie", "Referer"]
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
path_tails = st.one_of(
    st.sampled_from(
        [
            "/events",
            "/batch_events",
            "/channels",
            "/channels/a",
            "/channels/presence-a/users",
            "/users/u/terminate_connections",
        ]
    ),
    st.lists(st.text(max_size=8).map(lambda s: quote(s, safe="")), min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(parts)
    ),
)


@PROPERTY_SETTINGS
@given(
    method=methods,
    app_id=st.sampled_from([APP.id, "424242", "app with space"]),
    tail=path_tails,
    headers=st.dictionaries(safe_header_names, header_values, max_size=4),
    query=st.dictionaries(st.sampled_from(sorted(AUTH_PARAMS)) | query_text, query_text, max_size=5),
    body=st.binary(max_size=100),
)
def test_unsigned_or_garbage_requests_never_get_past_the_checks(
    server: ServerProcess,
    session: requests.Session,
    method: str,
    app_id: str,
    tail: str,
    headers: dict[str, str],
    query: dict[str, str],
    body: bytes,
) -> None:
    url = f"{server.url}/apps/{quote(app_id, safe='')}{tail}"
    response = session.request(method, url, params=query, headers=headers, data=body, timeout=10)
    event(f"status {response.status_code}")

    assert response.status_code in (401, 404, 405), response.text
    _json_error(response)
