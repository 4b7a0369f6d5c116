"""The Lambda handlers, called with recorded API Gateway, SQS and EventBridge events (``tests/events/``).

DynamoDB and SQS are moto (in-process); the management and Invoke APIs are a real stub server that
records what the handlers post and invoke, and answers 410 for connections API Gateway would not have
open. Each test is a container's life: ``$connect`` -> ``welcome`` -> frames -> ``$disconnect``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pusher
import pytest

from functions.client_ip import client_ip
from functions.connect.handler import handler as connect
from functions.disconnect.handler import handler as disconnect
from functions.fanout.handler import handler as fanout
from functions.http_api.handler import handler as http_api
from functions.http_api.handler import signed_path
from functions.message.handler import handler as message
from functions.sweep.handler import handler as sweep
from functions.webhooks.handler import handler as webhooks
from functions.welcome.handler import handler as welcome
from local_server.emulator.lambdas import LambdaContext
from shared import refusals
from shared.auth import sign_channel, sign_request
from shared.ratelog import RateLimitedLog
from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.emulator.awsstub import WebhookReceiver
from tests.emulator.conftest import Aws, recorded

SOCKET_ID = re.compile(r"^\d+\.\d+$")
WEBHOOK_DELAY = 1.0  # webhooks.delay_seconds of the handler tests (conftest)
CONTEXT = LambdaContext(function_name="sockless-test", region="us-east-1")
DISABLED = {"id": "disabled-id", "key": "disabled-key", "secret": "s", "enabled": False}
SINGLE = {"id": "single-id", "key": "single-key", "secret": "s", "max_connections": 1}
GUARDED = {"id": "guarded-id", "key": "guarded-key", "secret": "s", "allowed_origins": ["https://good.example"]}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.stop()


@pytest.fixture
def handler_apps(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    hooked = {**NUMERIC_APP, "webhooks": [{"url": receiver.url}]}
    return [DEFAULT_APP, hooked, DISABLED, SINGLE, GUARDED]


# -- helpers: one container's view of a connection ------------------------------------------------------


def connect_event(connection_id: str, key: str | None = "app-key", **query: str) -> dict[str, Any]:
    event = recorded("ws_connect.json")
    event["requestContext"]["connectionId"] = connection_id
    params = dict(event["queryStringParameters"], **query)
    if key is None:
        params.pop("app_key")
    else:
        params["app_key"] = key
    event["queryStringParameters"] = params
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()}
    return event


def frame_event(connection_id: str, frame: dict[str, Any] | str) -> dict[str, Any]:
    event = recorded("ws_message.json")
    event["requestContext"]["connectionId"] = connection_id
    event["body"] = frame if isinstance(frame, str) else json.dumps(frame)
    return event


def disconnect_event(connection_id: str) -> dict[str, Any]:
    event = recorded("ws_disconnect.json")
    event["requestContext"]["connectionId"] = connection_id
    return event


def open_socket(aws: Aws, connection_id: str, key: str = "app-key") -> str:
    """``$connect`` then the welcome it invoked, with the connection open: the numeric socket id."""
    assert connect(connect_event(connection_id, key), CONTEXT) == {"statusCode": 200}
    payload = aws.stub.invoked("sockless-welcome")[-1]
    aws.stub.open.add(connection_id)
    assert welcome(payload, CONTEXT) == {"delivered": True}
    established = aws.stub.json_frames(connection_id)[0]
    assert established["event"] == "pusher:connection_established"
    socket_id = str(json.loads(established["data"])["socket_id"])
    return socket_id


def send(connection_id: str, frame: dict[str, Any] | str) -> None:
    assert message(frame_event(connection_id, frame), CONTEXT) == {"statusCode": 200}


def frames_after(aws: Aws, connection_id: str, start: int) -> list[dict[str, Any]]:
    """Frames posted to the connection after the first ``start``, subscription counts left out (the
    default app sends one to a channel on every join and leave)."""
    frames = aws.stub.json_frames(connection_id)[start:]
    return [f for f in frames if f["event"] != "pusher_internal:subscription_count"]


def presence_subscribe(connection_id: str, socket_id: str, channel: str, user_id: str, secret: str) -> None:
    channel_data = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
    auth = f"{'numeric-key' if secret == NUMERIC_APP['secret'] else 'app-key'}:"
    auth += sign_channel(secret, socket_id, channel, channel_data)
    send(
        connection_id,
        {"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}},
    )


def signed_http_event(name: str, secret: str, signed_path: str, body: bytes | None = None) -> dict[str, Any]:
    """A recorded HTTP API event, signed afresh (the recording's timestamp is long expired)."""
    event = recorded(name)
    params = dict(parse_qsl(event["rawQueryString"]))
    params.pop("auth_signature")
    params["auth_timestamp"] = str(int(time.time()))
    if body is not None:
        event["body"] = body.decode()
    if event.get("body"):
        params["body_md5"] = hashlib.md5(event["body"].encode()).hexdigest()
    params["auth_signature"] = sign_request(secret, event["requestContext"]["http"]["method"], signed_path, params)
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = params
    return event


def channel_info(aws: Aws, channel: str, info: str, app: dict[str, Any] = DEFAULT_APP) -> dict[str, Any]:
    """``GET /apps/{id}/channels/{channel}`` through the http_api handler (a recorded event, re-pointed)."""
    event = recorded("http_v2_channels.json")
    path = f"/apps/{app['id']}/channels/{channel}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(
        {"auth_key": app["key"], "auth_timestamp": "0", "auth_version": "1.0", "info": info}
    )
    params = dict(parse_qsl(event["rawQueryString"]), auth_timestamp=str(int(time.time())))
    params["auth_signature"] = sign_request(app["secret"], "GET", path, params)
    event["rawQueryString"] = urlencode(params)
    response = http_api(event, CONTEXT)
    assert response["statusCode"] == 200, response
    body: dict[str, Any] = json.loads(response["body"])
    return body


# -- $connect and the welcome ---------------------------------------------------------------------------


def test_connect_records_the_connection_and_invokes_the_welcome_with_a_numeric_socket_id(aws: Aws) -> None:
    assert connect(recorded("ws_connect.json"), CONTEXT) == {"statusCode": 200}
    [payload] = aws.stub.invoked("sockless-welcome")
    assert payload["connection_id"] == "BFHPhfCWIAMCKlQ=" and payload["app_id"] == "100001"
    assert SOCKET_ID.match(payload["socket_id"])
    # Nothing can be posted during $connect: the frame waits for the welcome function.
    assert aws.stub.frames == {}


def test_welcome_retries_gone_until_the_connection_opens_then_sends_connection_established(aws: Aws) -> None:
    connect(connect_event("opening-cid="), CONTEXT)
    payload = aws.stub.invoked("sockless-welcome")[-1]
    aws.stub.open.add("opening-cid=")
    aws.stub.opening["opening-cid="] = 3  # the upgrade is still completing for the first three posts
    assert welcome(payload, CONTEXT) == {"delivered": True}
    assert aws.stub.gone_posts.count("opening-cid=") == 3
    [established] = aws.stub.json_frames("opening-cid=")
    assert established["event"] == "pusher:connection_established"
    assert json.loads(established["data"]) == {"socket_id": payload["socket_id"], "activity_timeout": 120}


def test_connect_takes_the_key_from_an_app_path_when_the_query_has_none(aws: Aws) -> None:
    event = connect_event("path-cid=", key=None)
    event["path"] = "/app/app-key"
    connect(event, CONTEXT)
    assert aws.stub.invoked("sockless-welcome")[-1]["app_id"] == "100001"


@pytest.mark.parametrize(
    ("key", "query", "origin", "code"),
    [
        pytest.param("no-such-key", {}, None, 4001, id="unknown-key-4001"),
        pytest.param("disabled-key", {}, None, 4003, id="disabled-app-4003"),
        pytest.param("app-key", {"protocol": "9"}, None, 4007, id="unsupported-protocol-4007"),
        pytest.param("app-key", {"protocol": "x"}, None, 4006, id="invalid-protocol-4006"),
        pytest.param("guarded-key", {}, "https://evil.example", 4009, id="origin-not-allowed-4009"),
    ],
)
def test_a_refused_connection_is_accepted_then_sent_the_error_and_deleted(
    aws: Aws, key: str, query: dict[str, str], origin: str | None, code: int
) -> None:
    event = connect_event("refused-cid=", key, **query)
    if origin is not None:
        event["headers"]["Origin"] = origin
    # Rejecting the upgrade would make pusher-js retry forever; a pusher:error first frame stops it.
    assert connect(event, CONTEXT) == {"statusCode": 200}
    payload = aws.stub.invoked("sockless-welcome")[-1]
    assert payload["error"]["code"] == code and "socket_id" not in payload
    aws.stub.open.add("refused-cid=")
    welcome(payload, CONTEXT)
    [error] = aws.stub.json_frames("refused-cid=")
    assert error["event"] == "pusher:error" and error["data"]["code"] == code
    assert aws.stub.deleted == ["refused-cid="]


def emf_documents(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


@pytest.mark.parametrize(
    ("key", "query", "origin", "app_id", "code"),
    [
        pytest.param("no-such-key", {}, None, "-", 4001, id="unknown-key-4001"),
        pytest.param("disabled-key", {}, None, "disabled-id", 4003, id="disabled-app-4003"),
        pytest.param("app-key", {"protocol": "x"}, None, "100001", 4006, id="invalid-protocol-4006"),
        pytest.param("guarded-key", {}, "https://evil.example", "guarded-id", 4009, id="origin-not-allowed-4009"),
    ],
)
def test_a_refused_connect_is_logged_and_counted_like_on_the_local_server(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    key: str,
    query: dict[str, str],
    origin: str | None,
    app_id: str,
    code: int,
) -> None:
    # A fresh interval: another test of this process may have written a line of the same kind just now.
    monkeypatch.setattr(refusals, "log", RateLimitedLog(logging.getLogger("sockless.refused")))
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="sockless.refused"):
        for n in range(10):
            event = connect_event(f"refused-{n}-cid=", key, **query)
            if origin is not None:
                event["headers"]["Origin"] = origin
            assert connect(event, CONTEXT) == {"statusCode": 200}
    # One line per kind and code per interval, however many knock; the viewer's address behind CloudFront.
    [line] = [r.getMessage() for r in caplog.records if r.name == "sockless.refused"]
    viewer = client_ip(event["headers"], event["requestContext"]["identity"]["sourceIp"])
    assert line.startswith(f"refused kind=websocket app={app_id} client={viewer} code={code} reason=")
    # Every refusal counted: one EMF document per invocation, the app (or "-") as its dimension.
    documents = emf_documents(capsys.readouterr().out)
    assert sum(d.get(f"refused_websocket_{code}", [0])[0] for d in documents) == 10
    assert {d["app_id"] for d in documents if f"refused_websocket_{code}" in d} == {app_id}


def test_connects_over_the_per_address_limit_are_counted_as_4100(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A window far longer than the test: five connects on a loaded machine can take more than a second.
    limit = {"max_requests": 2, "window_seconds": 600}
    monkeypatch.setenv("SOCKLESS_RATE_LIMITS", json.dumps({"connections_per_ip": limit}))
    capsys.readouterr()
    for n in range(5):
        connect(connect_event(f"flood-{n}-cid="), CONTEXT)
    codes = [p.get("error", {}).get("code") for p in aws.stub.invoked("sockless-welcome")]
    assert codes == [None, None, 4100, 4100, 4100]
    documents = emf_documents(capsys.readouterr().out)
    assert sum(d.get("refused_websocket_4100", [0])[0] for d in documents if d["app_id"] == "100001") == 3


def test_the_app_over_its_connection_quota_counts_the_refusal_as_4004(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    open_socket(aws, "first-cid=", "single-key")
    capsys.readouterr()
    connect(connect_event("second-cid=", "single-key"), CONTEXT)
    [document] = [d for d in emf_documents(capsys.readouterr().out) if "refused_websocket_4004" in d]
    assert document["app_id"] == "single-id" and document["refused_websocket_4004"] == [1.0]


def test_the_app_over_its_connection_quota_refuses_the_next_one_with_4004(aws: Aws) -> None:
    open_socket(aws, "first-cid=", "single-key")
    connect(connect_event("second-cid=", "single-key"), CONTEXT)
    assert aws.stub.invoked("sockless-welcome")[-1]["error"]["code"] == 4004


def test_a_connect_that_cannot_start_its_welcome_fails_and_forgets_the_connection(aws: Aws) -> None:
    aws.stub.throttled.add("sockless-welcome")
    with pytest.raises(Exception, match="TooManyRequests"):
        connect(connect_event("throttled-cid=", "single-key"), CONTEXT)  # API Gateway refuses the upgrade
    aws.stub.throttled.clear()
    # No $disconnect will come for a refused upgrade: the quota slot must already be free.
    open_socket(aws, "next-cid=", "single-key")


def test_a_welcome_whose_connection_never_opens_removes_it(aws: Aws) -> None:
    connect(connect_event("vanished-cid="), CONTEXT)
    payload = aws.stub.invoked("sockless-welcome")[-1]
    assert welcome(payload, CONTEXT) == {"delivered": False}  # 410 for the whole retry window
    # Its quota slot and record are gone: frames from that id are now ignored.
    send("vanished-cid=", {"event": "pusher:ping", "data": {}})
    assert aws.stub.frames.get("vanished-cid=", []) == []


# -- $default -------------------------------------------------------------------------------------------


def test_recorded_subscribe_frame_is_answered_with_subscription_succeeded(aws: Aws) -> None:
    open_socket(aws, "BFHPhfCWIAMCKlQ=")
    assert message(recorded("ws_message.json"), CONTEXT) == {"statusCode": 200}
    succeeded, count = aws.stub.json_frames("BFHPhfCWIAMCKlQ=")[1:]
    assert succeeded == {"event": "pusher_internal:subscription_succeeded", "channel": "my-channel", "data": "{}"}
    assert count["event"] == "pusher_internal:subscription_count"  # the default app counts subscribers


def test_ping_is_answered_with_pong_and_bad_frames_with_pusher_errors(aws: Aws) -> None:
    open_socket(aws, "ping-cid=")
    send("ping-cid=", {"event": "pusher:ping", "data": {}})
    send("ping-cid=", "not json")
    send("ping-cid=", {"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": "app-key:bad"}})
    events = [f["event"] for f in frames_after(aws, "ping-cid=", 1)]
    assert events == ["pusher:pong", "pusher:error", "pusher:subscription_error", "pusher:error"]


def test_a_frame_from_an_unknown_connection_is_ignored(aws: Aws) -> None:
    send("never-connected=", {"event": "pusher:subscribe", "data": {"channel": "news"}})
    assert aws.stub.frames == {} and aws.stub.gone_posts == []


def test_a_ping_is_answered_straight_back_without_reading_the_store(aws: Aws) -> None:
    open_socket(aws, "idle-cid=")
    calls = aws.dynamodb_calls()
    send("idle-cid=", '{"event":"pusher:ping","data":{}}')
    assert aws.stub.json_frames("idle-cid=")[-1] == {"event": "pusher:pong", "data": "{}"}
    assert aws.dynamodb_calls() == calls


def test_client_events_reach_the_other_subscriber_only(aws: Aws) -> None:
    a = open_socket(aws, "a-cid=")
    b = open_socket(aws, "b-cid=")
    for cid, socket_id in (("a-cid=", a), ("b-cid=", b)):
        auth = "app-key:" + sign_channel("app-secret", socket_id, "private-chat")
        send(cid, {"event": "pusher:subscribe", "data": {"channel": "private-chat", "auth": auth}})
    send("a-cid=", {"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}})
    assert [f["event"] for f in frames_after(aws, "b-cid=", 2)] == ["client-typing"]
    assert [f["event"] for f in frames_after(aws, "a-cid=", 2)] == []


# -- $disconnect ----------------------------------------------------------------------------------------


def test_disconnect_removes_the_member_once_even_when_it_arrives_twice(aws: Aws, receiver: WebhookReceiver) -> None:
    alice = open_socket(aws, "alice-cid=", "numeric-key")
    bob = open_socket(aws, "bob-cid=", "numeric-key")
    presence_subscribe("alice-cid=", alice, "presence-room", "alice", NUMERIC_APP["secret"])
    presence_subscribe("bob-cid=", bob, "presence-room", "bob", NUMERIC_APP["secret"])
    seen = len(aws.stub.frames["alice-cid="])
    assert disconnect(disconnect_event("bob-cid="), CONTEXT) == {"statusCode": 200}
    assert disconnect(disconnect_event("bob-cid="), CONTEXT) == {"statusCode": 200}
    removed = [f for f in frames_after(aws, "alice-cid=", seen) if f["event"] == "pusher_internal:member_removed"]
    assert [json.loads(f["data"]) for f in removed] == [{"user_id": "bob"}]
    time.sleep(WEBHOOK_DELAY + 0.2)  # member_removed waits out Pusher's delay in SQS
    names = [job["event"]["name"] for job in aws.queued_jobs()]
    assert names.count("member_added") == 2 and names.count("member_removed") == 1


# -- the REST API ---------------------------------------------------------------------------------------


def test_recorded_publish_through_a_stage_path_reaches_the_subscriber(aws: Aws) -> None:
    open_socket(aws, "sub-cid=", "numeric-key")
    send("sub-cid=", {"event": "pusher:subscribe", "data": {"channel": "my-channel"}})
    event = signed_http_event("http_v2_events.json", NUMERIC_APP["secret"], "/apps/12345/events")
    assert event["rawPath"] == "/prod/apps/12345/events"  # the stage is in the path, not in what was signed
    response = http_api(event, CONTEXT)
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {}
    [published] = frames_after(aws, "sub-cid=", 2)
    assert published == {"event": "my-event", "channel": "my-channel", "data": '{"message":"hello"}'}


@pytest.mark.parametrize(
    ("raw_path", "signed"),
    [
        pytest.param("/apps/1/events", "/apps/1/events", id="default-stage"),
        pytest.param("/prod/apps/1/events", "/apps/1/events", id="named-stage"),
        pytest.param("/pusher/v1/apps/1/channels/a%20b", "/apps/1/channels/a b", id="proxy-prefix-decoded"),
        pytest.param("/prod/nothing", "/prod/nothing", id="no-apps-path-left-for-the-404"),
    ],
)
def test_the_signed_path_is_the_apps_path_whatever_comes_before_it(raw_path: str, signed: str) -> None:
    assert signed_path(raw_path) == signed


def test_a_bad_signature_is_401_and_publishes_nothing(aws: Aws) -> None:
    open_socket(aws, "sub-cid=", "numeric-key")
    send("sub-cid=", {"event": "pusher:subscribe", "data": {"channel": "my-channel"}})
    event = signed_http_event("http_v2_events.json", "wrong-secret", "/apps/12345/events")
    response = http_api(event, CONTEXT)
    assert response["statusCode"] == 401 and "error" in json.loads(response["body"])
    assert frames_after(aws, "sub-cid=", 2) == []


def test_recorded_channels_query_lists_occupied_presence_channels(aws: Aws) -> None:
    alice = open_socket(aws, "alice-cid=", "numeric-key")
    presence_subscribe("alice-cid=", alice, "presence-room", "alice", NUMERIC_APP["secret"])
    response = http_api(
        signed_http_event("http_v2_channels.json", NUMERIC_APP["secret"], "/apps/12345/channels"), CONTEXT
    )
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"channels": {"presence-room": {"user_count": 1}}}


# -- fan-out and 410 cleanup ----------------------------------------------------------------------------


def test_a_post_answered_410_cleans_the_member_up_like_a_disconnect(aws: Aws) -> None:
    alice = open_socket(aws, "alice-cid=", "numeric-key")
    bob = open_socket(aws, "bob-cid=", "numeric-key")
    presence_subscribe("alice-cid=", alice, "presence-room", "alice", NUMERIC_APP["secret"])
    presence_subscribe("bob-cid=", bob, "presence-room", "bob", NUMERIC_APP["secret"])
    aws.stub.open.discard("bob-cid=")  # bob vanished and API Gateway never sent $disconnect
    aws.queued_jobs()
    seen = len(aws.stub.frames["alice-cid="])
    event = signed_http_event(
        "http_v2_events.json",
        NUMERIC_APP["secret"],
        "/apps/12345/events",
        body=json.dumps({"name": "ping", "channels": ["presence-room"], "data": "{}"}).encode(),
    )
    assert http_api(event, CONTEXT)["statusCode"] == 200
    events = [f["event"] for f in frames_after(aws, "alice-cid=", seen)]
    assert events == ["ping", "pusher_internal:member_removed"]
    time.sleep(WEBHOOK_DELAY + 0.2)
    assert [job["event"]["name"] for job in aws.queued_jobs()] == ["member_removed"]
    response = http_api(
        signed_http_event("http_v2_channels.json", NUMERIC_APP["secret"], "/apps/12345/channels"), CONTEXT
    )
    assert json.loads(response["body"]) == {"channels": {"presence-room": {"user_count": 1}}}


def test_fanout_posts_its_chunk_and_drops_the_gone_sockets(aws: Aws) -> None:
    sockets = {cid: open_socket(aws, cid) for cid in ("f1=", "f2=", "f3=")}
    for cid in sockets:
        send(cid, {"event": "pusher:subscribe", "data": {"channel": "big"}})
    aws.stub.open.discard("f3=")
    frame = json.dumps({"event": "news", "channel": "big", "data": "{}"})
    result = fanout({"app_id": "100001", "socket_ids": list(sockets.values()), "frame": frame}, CONTEXT)
    assert result["sent"] == 2
    assert [f["event"] for f in frames_after(aws, "f1=", 2)] == ["news"]
    assert channel_info(aws, "big", "subscription_count") == {"occupied": True, "subscription_count": 2}


# -- webhooks -------------------------------------------------------------------------------------------


def test_webhook_batch_delivers_signed_events_and_reports_the_malformed_record(
    aws: Aws, receiver: WebhookReceiver
) -> None:
    result = webhooks(recorded("sqs_webhooks.json"), CONTEXT)
    # The third record is not a job: SQS keeps it (then the DLQ); the other two are done.
    assert result == {"batchItemFailures": [{"itemIdentifier": "a8e3c1b5-0d4f-4e6a-9b7c-2f1e0d9c8b7a"}]}
    sdk = pusher.Pusher(app_id="12345", key="numeric-key", secret=NUMERIC_APP["secret"])
    names: list[str] = []
    for hook in receiver.hooks:
        validated = sdk.validate_webhook(
            hook.headers["x-pusher-key"], hook.headers["x-pusher-signature"], hook.body.decode()
        )
        assert validated is not None
        names.extend(e["name"] for e in validated["events"])
    # channel_vacated was delayed; my-channel is indeed empty, so it still holds and is delivered.
    assert sorted(names) == ["channel_occupied", "channel_vacated"]


def test_a_delayed_vacated_is_dropped_when_the_channel_is_occupied_again(aws: Aws, receiver: WebhookReceiver) -> None:
    open_socket(aws, "back-cid=", "numeric-key")
    send("back-cid=", {"event": "pusher:subscribe", "data": {"channel": "my-channel"}})
    event = recorded("sqs_webhooks.json")
    event["Records"] = event["Records"][1:2]  # the vacated one
    assert webhooks(event, CONTEXT) == {"batchItemFailures": []}
    assert receiver.hooks == []


def test_a_failing_receiver_gets_a_delayed_retry_and_the_record_is_done(aws: Aws, receiver: WebhookReceiver) -> None:
    receiver.statuses = [503]
    event = recorded("sqs_webhooks.json")
    event["Records"] = event["Records"][:1]
    assert webhooks(event, CONTEXT) == {"batchItemFailures": []}
    assert len(receiver.hooks) == 1
    time.sleep(1.1)  # the retry copy waits out its SQS delay
    [retry] = aws.queued_jobs()
    assert retry["attempts"] == 1 and retry["event"]["name"] == "channel_occupied"


# -- the sweep ------------------------------------------------------------------------------------------


def test_recorded_schedule_runs_a_sweep_that_finds_nothing_on_an_empty_table(aws: Aws) -> None:
    assert sweep(recorded("scheduled_sweep.json"), CONTEXT) == {"checked": 0, "removed": 0}


# -- observability --------------------------------------------------------------------------------------


def test_an_invocation_writes_its_counts_as_one_emf_document_per_app(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    open_socket(aws, "sub-cid=", "numeric-key")
    send("sub-cid=", {"event": "pusher:subscribe", "data": {"channel": "my-channel"}})
    capsys.readouterr()
    event = signed_http_event("http_v2_events.json", NUMERIC_APP["secret"], "/apps/12345/events")
    assert http_api(event, CONTEXT)["statusCode"] == 200
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [emf] = documents  # one app touched: one document
    assert emf["app_id"] == "12345"
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "sockless" and directive["Dimensions"] == [["app_id"]]
    assert emf["http_calls"] == [1.0] and emf["ws_messages_sent"] == [1.0]
