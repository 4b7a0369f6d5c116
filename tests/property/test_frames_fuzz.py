"""Random frames over a real WebSocket to the real local server: every answer is a valid Pusher frame.

Each example opens a socket, sends a few random frames (random JSON, non-objects, wrong types, huge and
deeply nested values, lone-surrogate escapes, unknown ``pusher:`` events, bad channel names, random
subscribe/unsubscribe sequences, binary frames), then a ``pusher:ping``. Until the ``pusher:pong`` every
frame the server sends must be JSON with a string ``event`` it is allowed to send, protocol errors must
be ``pusher:error``, and the socket may only be closed with a Pusher code announced by a ``pusher:error``.
Then a valid subscribe on the same socket must still succeed, and a fresh connection must still be
welcomed. The server log must show no traceback.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from shared.auth.signatures import sign_channel
from tests.serverproc import ServerProcess

KEY, SECRET = "app-key", "app-secret"
TIMEOUT = 10.0

SERVER_EVENTS = {
    "pusher:error",
    "pusher:pong",
    "pusher:subscription_error",
    "pusher:signin_success",
    "pusher:cache_miss",
    "pusher_internal:subscription_succeeded",
    "pusher_internal:subscription_count",
    "pusher_internal:member_added",
    "pusher_internal:member_removed",
    "pusher_internal:watchlist_events",
}


@dataclass(frozen=True)
class Signed:
    """A subscribe with correct auth, filled in once the socket id is known."""

    channel: str
    user_id: str | None = None


Frame = str | bytes | Signed

# -- strategies -----------------------------------------------------------------------------------------

text = st.text(max_size=12)
# Sent as "\udXXX" escapes by json.dumps: legal JSON that decodes to an unencodable lone surrogate.
tricky_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text | tricky_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
CHANNELS = [
    "fuzz-a",
    "cache-fuzz",
    "private-fuzz",
    "private-encrypted-fuzz",
    "presence-fuzz",
    "presence-cache-fuzz",
    "#server-to-user-1",
]
bad_channels = st.sampled_from(["", "a b", "#x", "private-#", "é", "x" * 201, "#server-to-user-"]) | text
channels = st.sampled_from(CHANNELS) | bad_channels | json_values
huge = st.sampled_from([201, 5_000, 70_000]).map(lambda n: "x" * n)


def dumps(value: Any) -> str:
    return json.dumps(value)


subscribe_data = st.fixed_dictionaries(
    {"channel": channels},
    optional={"auth": st.sampled_from([f"{KEY}:{'0' * 64}", "nope"]) | json_values, "channel_data": json_values},
)
frames = st.one_of(
    json_values.map(dumps),  # any JSON, mostly not a frame
    text,  # not JSON at all
    st.binary(max_size=16),  # binary WebSocket frames
    st.fixed_dictionaries({"event": json_values}, optional={"data": json_values}).map(dumps),
    st.builds(lambda e, d: dumps({"event": "pusher:" + e, "data": d}), text, json_values),  # unknown pusher:*
    st.builds(lambda d: dumps({"event": "pusher:subscribe", "data": d}), subscribe_data | json_values),
    st.builds(lambda d: dumps({"event": "pusher:subscribe", "data": dumps(d)}), subscribe_data),  # data as string
    st.builds(lambda c: dumps({"event": "pusher:unsubscribe", "data": {"channel": c}}), channels),
    st.builds(lambda d: dumps({"event": "pusher:signin", "data": d}), json_values),
    st.builds(lambda e, c, d: dumps({"event": "client-" + e, "channel": c, "data": d}), text, channels, json_values),
    st.builds(lambda h: dumps({"event": "pusher:subscribe", "data": {"channel": h}}), huge),
    st.builds(lambda h: dumps({"event": h, "data": {}}), huge),
    st.sampled_from([1_000, 20_000]).map(lambda n: "[" * n + "]" * n),
    st.sampled_from([1_000, 10_000]).map(
        lambda n: '{"event":"pusher:subscribe","data":' + '{"a":' * n + "1" + "}" * n + "}"
    ),
    st.builds(Signed, st.sampled_from(["private-fuzz", "private-encrypted-fuzz", "presence-fuzz"]), st.just("1")),
)


# -- the check ------------------------------------------------------------------------------------------


def check_frame(raw: str) -> dict[str, Any]:
    msg = json.loads(raw)
    assert isinstance(msg, dict), raw[:200]
    event = msg.get("event")
    assert isinstance(event, str), raw[:200]
    assert event in SERVER_EVENTS, f"unexpected event {event!r}"
    if event == "pusher:error":
        data = msg["data"]
        assert isinstance(data, dict), raw[:200]
        assert isinstance(data["message"], str)
        assert data["code"] is None or (isinstance(data["code"], int) and 4000 <= data["code"] < 5000)
    elif "data" in msg:
        assert isinstance(msg["data"], str), raw[:200]
        json.loads(msg["data"])
    return msg


async def receive(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    try:
        return await ws.receive(timeout=TIMEOUT)
    except TimeoutError:
        raise AssertionError("the server did not answer in time") from None


async def welcome(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await receive(ws)
    assert msg.type is aiohttp.WSMsgType.TEXT
    first = check_frame(msg.data) if "connection_established" not in msg.data else json.loads(msg.data)
    assert first["event"] == "pusher:connection_established"
    socket_id = json.loads(first["data"])["socket_id"]
    assert isinstance(socket_id, str)
    return socket_id


def signed(frame: Signed, socket_id: str) -> str:
    if frame.user_id is None or not frame.channel.startswith("presence-"):
        sig = sign_channel(SECRET, socket_id, frame.channel)
        return dumps({"event": "pusher:subscribe", "data": {"channel": frame.channel, "auth": f"{KEY}:{sig}"}})
    channel_data = dumps({"user_id": frame.user_id})
    sig = sign_channel(SECRET, socket_id, frame.channel, channel_data)
    data = {"channel": frame.channel, "auth": f"{KEY}:{sig}", "channel_data": channel_data}
    return dumps({"event": "pusher:subscribe", "data": data})


@dataclass
class Answers:
    errors: int = 0  # pusher:error frames received
    closed: bool = False  # the server closed the socket (with an announced Pusher code)


async def until(ws: aiohttp.ClientWebSocketResponse, event: str, channel: str | None = None) -> Answers:
    """Read valid frames until ``event`` (on ``channel``) or until the server closes the socket, which it
    may only do with a Pusher close code it announced in a ``pusher:error``."""
    answers = Answers()
    last_error: int | None = None
    while True:
        msg = await receive(ws)
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = check_frame(msg.data)
            if frame["event"] == "pusher:error":
                answers.errors += 1
                last_error = frame["data"]["code"]
            if frame["event"] == event and (channel is None or frame.get("channel") == channel):
                return answers
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = ws.close_code
            assert code is not None and 4000 <= code < 4300, f"socket closed with {code}"
            assert last_error == code, f"closed with {code} without a pusher:error announcing it"
            answers.closed = True
            return answers
        else:
            raise AssertionError(f"unexpected WebSocket message {msg.type}")


HANDLED = {"pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe", "pusher:signin"}


def certainly_refused(frame: Frame) -> bool:
    """Frames any server must answer with ``pusher:error``: not a JSON object with a string event it knows."""
    if isinstance(frame, Signed):
        return False
    if isinstance(frame, bytes):
        return True
    try:
        msg = json.loads(frame)
    except (ValueError, RecursionError):
        return True
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        return True
    return not (msg["event"] in HANDLED or msg["event"].startswith("client-"))


async def exercise(url: str, sequence: list[Frame]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/app/{KEY}?protocol=7", autoping=True, max_msg_size=0) as ws:
            socket_id = await welcome(ws)
            for frame in sequence:
                if isinstance(frame, Signed):
                    await ws.send_str(signed(frame, socket_id))
                elif isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            await ws.send_str('{"event":"pusher:ping","data":{}}')
            answers = await until(ws, "pusher:pong")
            if not answers.closed:
                assert answers.errors >= sum(map(certainly_refused, sequence)), "a bad frame got no pusher:error"
                await ws.send_str('{"event":"pusher:subscribe","data":{"channel":"fuzz-check"}}')
                assert not (await until(ws, "pusher_internal:subscription_succeeded", "fuzz-check")).closed
        async with session.ws_connect(f"{url}/app/{KEY}?protocol=7") as fresh:
            await welcome(fresh)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(sequence=st.lists(frames, min_size=1, max_size=6))
def test_random_frames_get_valid_answers_and_the_server_stays_up(server: ServerProcess, sequence: list[Frame]) -> None:
    note("frames: " + repr([f if len(f) < 300 else f[:300] for f in sequence if not isinstance(f, Signed)]))
    note("signed: " + repr([f for f in sequence if isinstance(f, Signed)]))
    log_before = len(server.output())
    asyncio.run(exercise(server.url, sequence))
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    new_log = server.output()[log_before:]
    assert "Traceback" not in new_log, new_log[-3000:]
