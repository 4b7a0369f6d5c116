"""AWS Lambda webhook targets (``lambda: {function_name, region}`` and the legacy ``lambda_function``): an
asynchronous ``Invoke`` (``InvocationType=Event``) whose payload is the Pusher body, checked on the requests
moto records. moto does not run the function without Docker; its recorder keeps what the API received."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from moto import mock_aws
from moto.moto_api import recorder
from moto.server import ThreadedMotoServer
from prometheus_client import CollectorRegistry

from shared.apps.config import ConfigAppStore
from shared.engine.emitter import WebhookEmitter
from shared.metrics.prometheus import PrometheusMetrics
from shared.settings import AppConfig, WebhookSettings
from shared.store.memory import MemoryChannelStore
from shared.webhooks.dispatcher import WebhookDispatcher
from shared.webhooks.memory import MemoryWebhookQueue
from shared.webhooks.targets import create_targets
from tests.serverproc import ServerProcess, free_port
from tests.webhooks.support import APP_A, PusherSocket, server_config

ASSUME_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def create_function(name: str, region: str, role_arn: str) -> None:
    boto3.client("lambda", region_name=region).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role_arn,
        Handler="index.handler",
        Code={"ZipFile": function_zip()},
    )


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials, and moto's request recorder writing into this test's folder."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    # The recorder reads its file path from the environment once, at import: point it at this test's folder.
    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto_recording"))
    recorder.reset_recording()
    recorder.start_recording()
    try:
        yield
    finally:
        recorder.stop_recording()


@pytest.fixture
def aws(aws_env: None) -> Iterator[str]:
    """moto's in-process AWS with the Docker-less Lambda backend; yields an IAM role for functions."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        role = boto3.client("iam").create_role(RoleName="hooks", AssumeRolePolicyDocument=json.dumps(ASSUME_LAMBDA))
        yield str(role["Role"]["Arn"])


def invocations() -> list[dict[str, Any]]:
    """The Lambda ``Invoke`` requests moto received: url, headers and the decoded payload."""
    found = []
    for line in recorder.download_recording().splitlines():
        entry = json.loads(line)
        if entry["method"] == "POST" and entry["url"].endswith("/invocations"):
            body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"].encode()
            found.append({"url": entry["url"], "headers": entry["headers"], "body": body})
    return found


def parts(app: AppConfig) -> tuple[WebhookEmitter, WebhookDispatcher, CollectorRegistry]:
    queue = MemoryWebhookQueue()
    metrics = PrometheusMetrics()
    dispatcher = WebhookDispatcher(
        queue=queue,
        apps=ConfigAppStore((app,)),
        store=MemoryChannelStore(),
        targets=create_targets(),
        settings=WebhookSettings(retry_initial_backoff_seconds=0.05, retry_max_elapsed_seconds=0.5),
        metrics=metrics,
    )
    return WebhookEmitter(queue, delay_seconds=0.0), dispatcher, metrics.registry


async def deliver_all(dispatcher: WebhookDispatcher) -> None:
    while jobs := await dispatcher.queue.receive(100, 0.0):
        await dispatcher.process(jobs)


async def test_lambda_targets_are_invoked_asynchronously_with_the_pusher_body(aws: str) -> None:
    create_function("pusher-hooks", "eu-west-1", aws)
    create_function("legacy-hooks", "us-east-1", aws)
    app = AppConfig.model_validate(
        {
            **APP_A,
            "webhooks": [
                {"lambda": {"function_name": "pusher-hooks", "region": "eu-west-1"}},
                {"lambda_function": "legacy-hooks", "event_types": ["member_added"]},
            ],
        }
    )
    emitter, dispatcher, registry = parts(app)
    await emitter.emit(app, "channel_occupied", "presence-room")
    await emitter.emit(app, "member_added", "presence-room", user_id="u1")
    await deliver_all(dispatcher)

    calls = invocations()
    assert len(calls) == 3
    for call in calls:
        assert call["headers"]["X-Amz-Invocation-Type"] == "Event"
        assert set(json.loads(call["body"])) == {"time_ms", "events"}
    modern = [c for c in calls if "/functions/pusher-hooks/" in c["url"]]
    legacy = [c for c in calls if "/functions/legacy-hooks/" in c["url"]]
    assert all("lambda.eu-west-1.amazonaws.com" in c["url"] for c in modern)
    assert all("lambda.us-east-1.amazonaws.com" in c["url"] for c in legacy)  # the legacy field's default region
    assert sorted(e["name"] for c in modern for e in json.loads(c["body"])["events"]) == [
        "channel_occupied",
        "member_added",
    ]
    assert [json.loads(c["body"])["events"] for c in legacy] == [
        [{"name": "member_added", "channel": "presence-room", "user_id": "u1"}]
    ]
    assert registry.get_sample_value("sockless_webhooks_delivered_total", {"app_id": app.id}) == 3
    assert await dispatcher.queue.pending() == 0


async def test_missing_function_is_a_final_failure_counted_as_lost(aws_env: None) -> None:
    """With the standard backend (the Docker-less one accepts any name): nothing runs, as no function exists."""
    app = AppConfig.model_validate(
        {**APP_A, "webhooks": [{"lambda": {"function_name": "nope", "region": "eu-west-1"}}]}
    )
    emitter, dispatcher, registry = parts(app)
    await emitter.emit(app, "channel_occupied", "news")
    with mock_aws():
        await deliver_all(dispatcher)

    assert len(invocations()) == 1  # ResourceNotFound (404) is not retried
    assert registry.get_sample_value("sockless_webhooks_lost_total", {"app_id": app.id}) == 1
    assert await dispatcher.queue.pending() == 0


@pytest.fixture
def moto_server(aws_env: None) -> Iterator[str]:
    """moto in server mode (a thread of this process, so its recorder is the one above), Docker-less Lambda."""
    port = free_port()
    server = ThreadedMotoServer(port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    set_lambda_docker = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(set_lambda_docker, timeout=5).read()
    try:
        yield endpoint
    finally:
        # The setting is process-wide in moto: put the default back for whatever runs next.
        urllib.request.urlopen(
            urllib.request.Request(
                f"{endpoint}/moto-api/config",
                data=json.dumps({"lambda": {"use_docker": True}}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            ),
            timeout=5,
        ).read()
        server.stop()


async def test_local_server_invokes_a_lambda_target_for_real_client_events(
    moto_server: str, start_server: Callable[..., ServerProcess], session: aiohttp.ClientSession
) -> None:
    """End to end: the server subprocess reaches Lambda through boto3 (``AWS_ENDPOINT_URL_LAMBDA`` points it
    at moto), driven by a real WebSocket client."""
    iam = boto3.client("iam", endpoint_url=moto_server)
    role = iam.create_role(RoleName="hooks", AssumeRolePolicyDocument=json.dumps(ASSUME_LAMBDA))["Role"]["Arn"]
    boto3.client("lambda", region_name="eu-west-1", endpoint_url=moto_server).create_function(
        FunctionName="pusher-hooks",
        Runtime="python3.11",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": function_zip()},
    )
    app = {**APP_A, "webhooks": [{"lambda": {"function_name": "pusher-hooks", "region": "eu-west-1"}}]}
    env = {
        "AWS_ENDPOINT_URL_LAMBDA": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    server = start_server(server_config([app]), env=env)
    client = await PusherSocket.connect(session, server.ws_url, APP_A)
    await client.subscribe("presence-room", "u1")
    deadline = time.monotonic() + 10
    while len(invocations()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)

    calls = invocations()
    events = sorted((e["name"], e["channel"]) for c in calls for e in json.loads(c["body"])["events"])
    assert events == [("channel_occupied", "presence-room"), ("member_added", "presence-room")]
    assert all(c["headers"]["X-Amz-Invocation-Type"] == "Event" for c in calls)
    assert all("/functions/pusher-hooks/invocations" in c["url"] for c in calls)
    await client.close()
