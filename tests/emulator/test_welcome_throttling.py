"""``welcome`` under API Gateway throttling (#14 defect 9): a 429 on the first frame says nothing about the
connection, so it is retried on its own budget instead of being taken for a connection that never opened."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from functions.connect.handler import handler as connect
from functions.welcome.handler import WelcomeThrottled
from functions.welcome.handler import handler as welcome
from local_server.emulator.lambdas import LambdaContext
from tests.emulator.conftest import Aws, recorded

CONTEXT = LambdaContext(function_name="sockless-test", region="us-east-1")


def _connect(aws: Aws, connection_id: str) -> dict[str, Any]:
    event = recorded("ws_connect.json")
    event["requestContext"]["connectionId"] = connection_id
    event["queryStringParameters"] = {"app_key": "app-key", "protocol": "7"}
    assert connect(event, CONTEXT) == {"statusCode": 200}
    payload: dict[str, Any] = aws.stub.invoked("sockless-welcome")[-1]
    return payload


def test_a_throttled_welcome_is_retried_past_the_410_window_and_delivered(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 410 window of the handler tests is 0.5 s; 30 throttled posts take longer than that (the backoff
    is shortened here to keep the test quick), and the welcome still arrives (before the fix the throttles
    shared the 410 window: {"delivered": False} and an open connection forgotten)."""
    from functions.welcome import handler as module

    monkeypatch.setattr(module, "THROTTLE_CAP_SECONDS", 0.02)
    payload = _connect(aws, "storm-cid=")
    aws.stub.open.add("storm-cid=")
    aws.stub.post_throttled["storm-cid="] = 30
    assert welcome(payload, CONTEXT) == {"delivered": True}
    [frame] = aws.stub.json_frames("storm-cid=")
    assert frame["event"] == "pusher:connection_established"
    assert json.loads(frame["data"])["socket_id"] == payload["socket_id"]


def test_throttling_past_its_budget_fails_the_invocation_visibly(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``welcome_throttle_seconds`` the invocation raises: Lambda counts an error and sends the event to
    the AsyncFailures queue; the connection record stays for $disconnect or the sweep."""
    from functions import runtime

    env = json.loads(os.environ["SOCKLESS_AWS"])
    monkeypatch.setenv("SOCKLESS_AWS", json.dumps({**env, "welcome_throttle_seconds": 0.3}))
    runtime.reset()
    payload = _connect(aws, "jammed-cid=")
    aws.stub.open.add("jammed-cid=")
    aws.stub.post_throttled["jammed-cid="] = 10_000
    with pytest.raises(WelcomeThrottled, match="throttled"):
        welcome(payload, CONTEXT)
    assert aws.stub.json_frames("jammed-cid=") == []
