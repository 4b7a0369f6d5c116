"""The emulator behaves like API Gateway + Lambda where the handlers depend on it.

Echo functions (``echo_functions.py``) replace the real handlers here, so each behaviour of the emulator is
proven on its own: the upgrade waits for ``$connect``, posts before it answer 410, frames become
``$default`` events, closes and ``DeleteConnection`` become ``$disconnect``, the HTTP API builds payload
v2 events, the Invoke API runs functions asynchronously, and the SQS mapping honours partial failures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

ECHO = "tests.emulator.echo_functions"
# The template's handlers the echo functions stand in for.
HANDLERS = {
    "connect": "functions.connect.handler.handler",
    "welcome": "functions.welcome.handler.handler",
    "message": "functions.message.handler.handler",
    "disconnect": "functions.disconnect.handler.handler",
    "http_api": "functions.http_api.handler.handler",
    "webhooks": "functions.webhooks.handler.handler",
}


class EchoLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, kind: str) -> list[Any]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [e["event"] for e in map(json.loads, lines) if e["kind"] == kind]

    async def wait(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.entries(kind)) < count:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(found)} {kind} entries"
            await asyncio.sleep(0.05)
        return found


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, EchoLog]]:
    log = EchoLog(tmp_path_factory.mktemp("echo") / "log.jsonl")
    # $default invoking the function directly: what these tests prove is API Gateway's Lambda proxy path.
    args = ["--emulate-lambda", "--sweep-interval", "0", "--cdk-context", "ordered_frames=false"]
    for name, handler in HANDLERS.items():
        args += ["--replace-handler", f"{handler}={ECHO}.{name}"]
    # An app with a webhook: without one, the webhook queue's mapping is deployed disabled and never polled
    # (docs/cost.md), and the SQS mapping test below would see nothing. The echo handlers never call it.
    apps = [{**DEFAULT_APP, "webhooks": [{"url": "http://127.0.0.1:9/never-called"}]}]
    proc = ServerProcess({"apps": apps}, args=tuple(args), env={"ECHO_LOG": str(log.path)}).start(timeout=60)
    yield proc, log
    proc.cleanup()


async def test_connect_gets_the_key_from_the_path_and_the_welcome_waits_for_the_upgrade(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, log = echo
    before = len(log.entries("connect"))
    async with http.ws_connect(f"{proc.ws_url}/app/some-key?protocol=7&client=js") as ws:
        welcome = json.loads((await ws.receive(timeout=5)).data)
        assert welcome["event"] == "welcome"
    event = log.entries("connect")[before]
    assert event["queryStringParameters"] == {"app_key": "some-key", "protocol": "7", "client": "js"}
    context = event["requestContext"]
    assert (context["routeKey"], context["eventType"], context["stage"]) == ("$connect", "CONNECT", "prod")
    assert len(context["connectionId"]) == 16 and context["connectionId"].endswith("=")
    assert context["identity"]["sourceIp"] == "127.0.0.1"


async def test_a_non_2xx_connect_refuses_the_upgrade(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, _log = echo
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{proc.ws_url}/app/some-key?reject=1")
    assert refused.value.status == 401


async def test_frames_are_default_events_and_posts_come_back_in_order(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, log = echo
    async with http.ws_connect(f"{proc.ws_url}/app/k") as ws:
        await ws.receive(timeout=5)  # welcome
        await ws.send_str("hello")
        assert json.loads((await ws.receive(timeout=5)).data) == {"echo": "hello"}
        await ws.send_str("info")
        identity = json.loads((await ws.receive(timeout=5)).data)
        assert identity["SourceIp"] == "127.0.0.1"
        await ws.send_str("big")
        assert json.loads((await ws.receive(timeout=5)).data) == {"event": "too large"}
    message = next(m for m in log.entries("message") if m["body"] == "hello")
    assert message["requestContext"]["routeKey"] == "$default"
    assert message["requestContext"]["eventType"] == "MESSAGE"
    assert message["isBase64Encoded"] is False


async def test_a_failed_invocation_sends_api_gateways_error_message(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, _log = echo
    async with http.ws_connect(f"{proc.ws_url}/app/k") as ws:
        await ws.receive(timeout=5)
        await ws.send_str("boom")
        error = json.loads((await ws.receive(timeout=5)).data)
        assert error["message"] == "Internal server error"
        assert {"connectionId", "requestId"} <= set(error)


async def test_client_close_and_delete_connection_both_end_in_one_disconnect_event(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, log = echo
    # $connect has run (and logged) before the upgrade completes, so the last connect entry is ours; earlier
    # tests' sockets may still be disconnecting, so only these two connections' events are counted.
    ws = await http.ws_connect(f"{proc.ws_url}/app/k")
    ours = {log.entries("connect")[-1]["requestContext"]["connectionId"]}
    await ws.receive(timeout=5)
    await ws.close(code=1000)
    other = await http.ws_connect(f"{proc.ws_url}/app/k")
    ours.add(log.entries("connect")[-1]["requestContext"]["connectionId"])
    await other.receive(timeout=5)
    await other.send_str("delete")
    closed = await other.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and other.close_code == 1000
    assert len(ours) == 2
    deadline = asyncio.get_running_loop().time() + 10
    while len(events := [e for e in log.entries("disconnect") if e["requestContext"]["connectionId"] in ours]) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(events)} disconnect events"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a duplicate $disconnect would arrive within this
    events = [e for e in log.entries("disconnect") if e["requestContext"]["connectionId"] in ours]
    assert len(events) == 2
    assert all(e["requestContext"]["eventType"] == "DISCONNECT" for e in events)
    codes = sorted(e["requestContext"]["disconnectStatusCode"] for e in events)
    assert codes == [1000, 1000]


async def test_http_api_builds_a_payload_v2_event_and_maps_the_response(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, _log = echo
    async with http.post(
        f"{proc.url}/apps/1/events?b=2&a=1&a=3", data=b'{"x":1}', headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 201 and response.headers["x-echo"] == "1"
        event = await response.json()
    assert event["version"] == "2.0" and event["rawPath"] == "/apps/1/events"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"b": "2", "a": "1,3"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["body"] == '{"x":1}' and event["isBase64Encoded"] is False
    assert event["headers"]["content-type"] == "application/json"


async def test_other_paths_get_the_cloudfront_functions_404(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, _log = echo
    async with http.get(f"{proc.url}/nope") as response:
        assert response.status == 404
        assert await response.text() == "sockless: WebSocket clients connect to /app/{key}\n"


async def test_sqs_mapping_deletes_successes_and_redelivers_reported_failures(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    proc, log = echo
    async with http.ws_connect(f"{proc.ws_url}/app/k") as ws:
        await ws.receive(timeout=5)
    queue = log.entries("connect")[-1]["queue"]
    sqs = boto3.client(
        "sqs",
        endpoint_url=queue["endpoint_url"],
        region_name=queue["region"],
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    # The template's visibility timeout is 6 minutes (6x the worker's timeout); a test cannot wait that long.
    sqs.set_queue_attributes(QueueUrl=queue["queue_url"], Attributes={"VisibilityTimeout": "1"})
    sqs.send_message(QueueUrl=queue["queue_url"], MessageBody="ok")
    sqs.send_message(QueueUrl=queue["queue_url"], MessageBody="fail")

    def bodies() -> list[str]:
        return [r["body"] for batch in log.entries("webhooks") for r in batch["Records"]]

    deadline = asyncio.get_running_loop().time() + 20
    while bodies().count("fail") < 2:  # handed out again after the visibility timeout
        assert asyncio.get_running_loop().time() < deadline, bodies()
        await asyncio.sleep(0.2)
    assert bodies().count("ok") == 1
    record = log.entries("webhooks")[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["attributes"]["ApproximateReceiveCount"] == "1"


async def test_a_frame_over_32_kb_closes_with_1009_and_a_ping_is_answered_without_lambda(
    echo: tuple[ServerProcess, EchoLog], http: aiohttp.ClientSession
) -> None:
    # API Gateway's quotas: 32 KB per frame (a client sends a message as one frame), close code 1009. The
    # template's pusher:ping route is a MOCK integration: the pong comes from its response template, and
    # the message function (the echo here) never sees the frame.
    proc, log = echo
    async with http.ws_connect(f"{proc.ws_url}/app/k") as ws:
        await ws.receive(timeout=5)  # welcome
        await ws.send_str(json.dumps({"event": "pusher:ping", "data": {}}))
        assert json.loads((await ws.receive(timeout=5)).data) == {"event": "pusher:pong", "data": "{}"}
        await ws.send_str("x" * (32 * 1024))  # at the quota: still a message
        assert json.loads((await ws.receive(timeout=5)).data) == {"echo": "x" * (32 * 1024)}
        await ws.send_str("x" * (32 * 1024 + 1))
        closed = await ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
    assert not [m for m in log.entries("message") if "pusher:ping" in (m.get("body") or "")]
