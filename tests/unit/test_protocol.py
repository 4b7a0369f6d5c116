"""Channel names and types, frame encoding and client-frame parsing (docs/sources.md#pusher-protocol)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import FrameError
from shared.protocol import frames
from shared.protocol.channels import (
    ChannelType,
    allows_client_events,
    channel_type,
    check_channel_name,
    is_cache,
    requires_auth,
    server_to_user_channel,
    valid_channel_name,
    valid_event_name,
    valid_user_id,
)
from shared.settings import AppConfig
from shared.types import AppId

DEFAULT_MAX = AppConfig(id=AppId("a"), key="k", secret="s").max_channel_name_length

# -- channel names --------------------------------------------------------------------------------------


def test_default_channel_name_limit_is_200() -> None:
    assert DEFAULT_MAX == 200


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my-channel", id="public"),
        pytest.param("private-foo", id="private"),
        pytest.param("presence-room.1", id="presence"),
        pytest.param("private-encrypted-x", id="encrypted"),
        pytest.param("cache-x", id="cache"),
        pytest.param("AZaz09-_=@,.;", id="every-allowed-punctuation"),
        pytest.param("a", id="one-char"),
        pytest.param("a" * 200, id="200-chars"),
        pytest.param("#server-to-user-42", id="server-to-user"),
        pytest.param("#server-to-user-a.b@c", id="server-to-user-charset"),
    ],
)
def test_valid_channel_names(name: str) -> None:
    assert valid_channel_name(name, DEFAULT_MAX)
    assert check_channel_name(name, DEFAULT_MAX) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 201, id="201-chars"),
        pytest.param("#server-to-user-" + "1" * 185, id="server-to-user-over-200"),
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param("new\nline", id="newline"),
        pytest.param("slash/path", id="slash"),
        pytest.param("colon:x", id="colon"),
        pytest.param("star*", id="star"),
        pytest.param("quote'", id="quote"),
        pytest.param("ünïcode", id="non-ascii"),
        pytest.param("#hash", id="other-hash-prefix"),
        pytest.param("private-#foo", id="hash-inside"),
        pytest.param("#server-to-user-", id="server-to-user-without-id"),
        pytest.param("#server-to-user-a#b", id="server-to-user-second-hash"),
        pytest.param("#server-to-user-a b", id="server-to-user-space"),
        pytest.param("#server-to-userx", id="server-to-user-misspelt"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param(["private-a"], id="list"),
    ],
)
def test_invalid_channel_names(name: object) -> None:
    assert not valid_channel_name(name, DEFAULT_MAX)
    with pytest.raises(FrameError) as caught:
        check_channel_name(name, DEFAULT_MAX)
    assert caught.value.code is None
    assert "Invalid channel name" in caught.value.message


def test_channel_name_limit_is_per_app() -> None:
    assert valid_channel_name("a" * 164, 164)
    assert not valid_channel_name("a" * 165, 164)


def test_invalid_channel_name_error_message_is_bounded() -> None:
    with pytest.raises(FrameError) as caught:
        check_channel_name("x" * 100_000, DEFAULT_MAX)
    assert len(caught.value.message) < 300


# -- channel types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "cache", "auth", "client_events"),
    [
        pytest.param("news", ChannelType.PUBLIC, False, False, False, id="public"),
        pytest.param("privatefoo", ChannelType.PUBLIC, False, False, False, id="public-private-without-dash"),
        pytest.param("presencefoo", ChannelType.PUBLIC, False, False, False, id="public-presence-without-dash"),
        pytest.param("private-chat", ChannelType.PRIVATE, False, True, True, id="private"),
        pytest.param("private-encrypted-chat", ChannelType.ENCRYPTED, False, True, False, id="encrypted"),
        pytest.param("presence-room", ChannelType.PRESENCE, False, True, True, id="presence"),
        pytest.param("#server-to-user-7", ChannelType.SERVER_TO_USER, False, False, False, id="server-to-user"),
        pytest.param("cache-news", ChannelType.PUBLIC, True, False, False, id="cache"),
        pytest.param("private-cache-chat", ChannelType.PRIVATE, True, True, True, id="private-cache"),
        pytest.param(
            "private-encrypted-cache-chat", ChannelType.ENCRYPTED, True, True, False, id="private-encrypted-cache"
        ),
        pytest.param("presence-cache-room", ChannelType.PRESENCE, True, True, True, id="presence-cache"),
        pytest.param("news-cache-x", ChannelType.PUBLIC, False, False, False, id="cache-not-a-prefix"),
        pytest.param("private-cachex", ChannelType.PRIVATE, False, True, True, id="private-cachex-is-no-cache"),
    ],
)
def test_channel_type_and_cache(name: str, kind: ChannelType, cache: bool, auth: bool, client_events: bool) -> None:
    assert channel_type(name) is kind
    assert is_cache(name) is cache
    assert requires_auth(name) is auth
    assert allows_client_events(name) is client_events


def test_server_to_user_channel_name() -> None:
    assert server_to_user_channel("42") == "#server-to-user-42"
    assert channel_type(server_to_user_channel("42")) is ChannelType.SERVER_TO_USER


# -- event names and user ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("my-event", True, id="plain"),
        pytest.param("client-typing", True, id="client"),
        pytest.param("ünïcode:event/ok", True, id="any-non-space"),
        pytest.param("e" * 200, True, id="200-chars"),
        pytest.param("e" * 201, False, id="201-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("has space", False, id="space"),
        pytest.param("tab\t", False, id="tab"),
        pytest.param(None, False, id="none"),
        pytest.param(1, False, id="int"),
    ],
)
def test_valid_event_name(name: object, ok: bool) -> None:
    assert valid_event_name(name, 200) is ok


@pytest.mark.parametrize(
    ("user_id", "ok"),
    [
        pytest.param("42", True, id="digits"),
        pytest.param("user@example.com", True, id="email"),
        pytest.param("u" * 128, True, id="128-chars"),
        pytest.param("u" * 129, False, id="129-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("a b", False, id="space"),
        pytest.param("a#b", False, id="hash"),
        pytest.param(42, False, id="int-not-coerced-here"),
        pytest.param(None, False, id="none"),
    ],
)
def test_valid_user_id(user_id: object, ok: bool) -> None:
    assert valid_user_id(user_id) is ok


# -- server frames --------------------------------------------------------------------------------------


def decode(raw: bytes) -> dict[str, Any]:
    out = json.loads(raw)
    assert isinstance(out, dict)
    return out


def test_frame_data_object_is_double_encoded_as_a_json_string() -> None:
    out = decode(frames.frame("my-event", {"a": [1, 2]}, "my-channel"))
    assert out == {"event": "my-event", "channel": "my-channel", "data": '{"a":[1,2]}'}
    assert json.loads(out["data"]) == {"a": [1, 2]}


def test_frame_string_data_is_passed_through_untouched() -> None:
    """REST ``data`` is already a JSON string; re-encoding it would deliver a string inside a string."""
    out = decode(frames.frame("e", '{"x": 1}', "c"))
    assert out["data"] == '{"x": 1}'


def test_frame_without_data_or_channel_omits_them() -> None:
    assert decode(frames.frame("pusher:cache_miss", None, "cache-x")) == {
        "event": "pusher:cache_miss",
        "channel": "cache-x",
    }
    assert decode(frames.frame("e")) == {"event": "e"}


def test_frame_carries_user_id_for_presence_client_events() -> None:
    assert decode(frames.frame("client-x", "{}", "presence-a", "7"))["user_id"] == "7"


def test_frame_keeps_non_ascii_as_utf8() -> None:
    raw = frames.frame("e", {"name": "Zoë"}, "c")
    assert "Zoë".encode() in raw
    assert json.loads(decode(raw)["data"]) == {"name": "Zoë"}


def test_connection_established_frame() -> None:
    out = decode(frames.connection_established("123.456", 120))
    assert out["event"] == "pusher:connection_established"
    assert isinstance(out["data"], str)
    assert json.loads(out["data"]) == {"socket_id": "123.456", "activity_timeout": 120}


def test_error_frame_data_is_an_object_with_code_and_message() -> None:
    assert decode(frames.error_frame("nope", 4001)) == {
        "event": "pusher:error",
        "data": {"code": 4001, "message": "nope"},
    }
    assert decode(frames.error_frame("bad", None, "private-a")) == {
        "event": "pusher:error",
        "data": {"code": None, "message": "bad"},
        "channel": "private-a",
    }


def test_subscription_error_frame() -> None:
    out = decode(frames.subscription_error("private-a", "AuthError", "bad sig", 401))
    assert out["event"] == "pusher:subscription_error"
    assert out["channel"] == "private-a"
    assert json.loads(out["data"]) == {"type": "AuthError", "error": "bad sig", "status": 401}


def test_ping_and_pong_frames() -> None:
    assert decode(frames.PING) == {"event": "pusher:ping", "data": "{}"}
    assert decode(frames.PONG) == {"event": "pusher:pong", "data": "{}"}


# -- client frames --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"event":"pusher:ping","data":{}}', id="str"),
        pytest.param(b'{"event":"pusher:ping","data":{}}', id="bytes"),
        pytest.param('{"event":"pusher:ping"}', id="no-data"),
        pytest.param('{"event":"client-x","channel":"private-a","data":"text","extra":1}', id="extra-keys"),
    ],
)
def test_parse_client_frame_accepts_objects_with_string_event(raw: str | bytes) -> None:
    assert isinstance(frames.parse_client_frame(raw, 1024)["event"], str)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param("", "Invalid JSON", id="empty"),
        pytest.param("not json", "Invalid JSON", id="text"),
        pytest.param('{"event":', "Invalid JSON", id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", "Invalid JSON", id="bad-utf8"),
        pytest.param("[]", "must be a JSON object", id="array"),
        pytest.param('"pusher:ping"', "must be a JSON object", id="string"),
        pytest.param("42", "must be a JSON object", id="number"),
        pytest.param("null", "must be a JSON object", id="null"),
        pytest.param("{}", "string 'event'", id="no-event"),
        pytest.param('{"event":null}', "string 'event'", id="null-event"),
        pytest.param('{"event":42}', "string 'event'", id="int-event"),
        pytest.param('{"event":["pusher:ping"]}', "string 'event'", id="list-event"),
        pytest.param('{"event":"' + "x" * 2000 + '"}', "Frame too large", id="too-large"),
    ],
)
def test_parse_client_frame_errors(raw: str | bytes, message: str) -> None:
    with pytest.raises(FrameError) as caught:
        frames.parse_client_frame(raw, 1024)
    assert message in caught.value.message
    assert caught.value.code is None
    assert not caught.value.close


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        pytest.param({"event": "e", "data": {"channel": "a"}}, {"channel": "a"}, id="object"),
        pytest.param({"event": "e", "data": '{"channel":"a"}'}, {"channel": "a"}, id="json-string"),
    ],
)
def test_data_object(msg: dict[str, Any], expected: dict[str, Any]) -> None:
    assert frames.data_object(msg) == expected


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param({"event": "e"}, id="missing"),
        pytest.param({"event": "e", "data": None}, id="null"),
        pytest.param({"event": "e", "data": "not json"}, id="bad-json-string"),
        pytest.param({"event": "e", "data": "[1]"}, id="json-array-string"),
        pytest.param({"event": "e", "data": [1]}, id="array"),
        pytest.param({"event": "e", "data": 3}, id="number"),
    ],
)
def test_data_object_errors(msg: dict[str, Any]) -> None:
    with pytest.raises(FrameError, match="'data' must be a JSON object"):
        frames.data_object(msg)


# -- lone surrogates (JSON "\ud800" escapes are legal JSON but not encodable as UTF-8) --------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"event":"pusher:\\ud800"}', id="in-event"),
        pytest.param('{"event":"client-x","channel":"private-a","data":{"k":"\\udfff"}}', id="in-data"),
        pytest.param(b'{"event":"e","\\ud800":1}', id="in-key-bytes"),
    ],
)
def test_parse_client_frame_refuses_lone_surrogates(raw: str | bytes) -> None:
    with pytest.raises(FrameError, match="unpaired surrogate"):
        frames.parse_client_frame(raw, 1024)


def test_parse_client_frame_accepts_escaped_surrogate_pairs() -> None:
    assert frames.parse_client_frame('{"event":"e","data":"\\ud83d\\ude00"}', 1024)["data"] == "\U0001f600"


def test_frames_with_a_lone_surrogate_still_encode_as_valid_utf8_json() -> None:
    """A presence user_info or REST payload holding one must not make every later frame fail."""
    raw = frames.frame("e", {"name": "a\ud800b"}, "c")
    raw.decode("utf-8")
    assert json.loads(json.loads(raw)["data"]) == {"name": "a\ud800b"}
    assert json.loads(frames.frame("e", "x\udfff", "c"))["data"] == "x\udfff"
    assert json.loads(frames.error_frame("bad \ud800", None))["data"]["message"] == "bad \ud800"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("[" * 20_000 + "]" * 20_000, id="deep-array"),
        pytest.param('{"event":"e","data":' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}", id="deep-object"),
    ],
)
def test_parse_client_frame_refuses_deep_nesting(raw: str) -> None:
    """A RecursionError is no ValueError: unless caught it escaped the engine and dropped the socket."""
    with pytest.raises(FrameError, match="nested too deeply"):
        frames.parse_client_frame(raw, 1024 * 1024)


def test_data_object_refuses_deeply_nested_string_data() -> None:
    with pytest.raises(FrameError):
        frames.data_object({"event": "pusher:subscribe", "data": "[" * 20_000 + "]" * 20_000})
