"""The emulator's fault options (docs/aws.md, "API Gateway's quotas and timings"): each has the effect it
documents, and the product still does the right thing under it.

- ``--throttle-posts SHARE`` answers every 1/SHARE-th ``@connections`` call with 429: the senders retry with
  jittered backoff, so a publish reaches every subscriber exactly once, or a recipient whose retries all
  met a 429 is counted in ``ws_messages_failed`` and named in one log line (issue 17's throttling test,
  ``tests/aws/test_apigateway_sender.py``, here against the emulator's injected 429s).
- ``--cold-start SECONDS`` is the INIT of each new container, before its first invocation: the first
  connection waits for two (``$connect``, then the welcome), later ones reuse the warm containers.
- ``--async-delay SECONDS`` holds every ``Event`` invocation in Lambda's queue: the welcome and the fan-out
  chunks a publish hands on arrive that much later, and all of them arrive.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess
from tests.support import publish

pytestmark = pytest.mark.e2e

StartServer = Callable[..., ServerProcess]
# The default app without subscription_count: each subscribe would post a count to every subscriber, and
# those posts would share the injected 429s with the ones a test counts.
APP = {**DEFAULT_APP, "enable_subscription_count": False}
APP_ID = str(APP["id"])
URL = "/app/{key}?protocol=7&client=test&version=1".format(key=APP["key"])


class Client:
    """A raw protocol 7 connection that keeps every frame it receives, with the loop time it came."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, welcomed_after: float) -> None:
        self.ws = ws
        self.welcomed_after = welcomed_after  # seconds from the upgrade request to connection_established
        self.frames: list[tuple[float, dict[str, Any]]] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, server: ServerProcess, timeout: float = 10.0) -> Client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ws = await http.ws_connect(server.ws_url + URL)
        welcome = await ws.receive_json(timeout=timeout)
        assert welcome["event"] == "pusher:connection_established", welcome
        return cls(ws, loop.time() - started)

    async def subscribe(self, channel: str, timeout: float = 10.0) -> None:
        await self.ws.send_json({"event": "pusher:subscribe", "data": {"channel": channel}})
        frame = await self.ws.receive_json(timeout=timeout)
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame

    async def read(self, until: float) -> None:
        """Keep what arrives until ``until`` (loop time)."""
        loop = asyncio.get_running_loop()
        while (left := until - loop.time()) > 0:
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                return
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            self.frames.append((loop.time(), json.loads(msg.data)))

    async def wait_for(self, name: str, until: float) -> None:
        """Keep what arrives until an event ``name`` has, or ``until`` (loop time) passes."""
        loop = asyncio.get_running_loop()
        while not self.events(name) and loop.time() < until:
            await self.read(min(until, loop.time() + 0.1))

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, frame) for at, frame in self.frames if frame["event"] == name]


async def stats(server: ServerProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/@emulator/stats") as response:
        data: dict[str, Any] = await response.json()
        return data


def emf(server: ServerProcess, name: str) -> float:
    """The sum of the EMF metric ``name`` the functions printed for the app (needs ``--show-emf``)."""
    total = 0.0
    for line in server.output().splitlines():
        if '"_aws"' not in line or f'"{name}"' not in line:
            continue
        document = json.loads(line[line.index("{") :])
        if document.get("app_id") == APP_ID:
            value = document[name]
            total += sum(value) if isinstance(value, list) else value
    return total


def invocations(data: dict[str, Any], function: str) -> int:
    return sum(n for name, n in data["lambda"]["invocations"].items() if function in name)


def cold_starts(data: dict[str, Any], function: str) -> int:
    return sum(n for name, n in data["lambda"]["cold_starts"].items() if function in name)


async def subscribers(http: aiohttp.ClientSession, server: ServerProcess, count: int, channel: str) -> list[Client]:
    """``count`` clients subscribed to ``channel``, one after the other: under injected throttling each one's
    posts are then the only ones in flight, and a lone caller never meets more 429s in a row than its
    retries absorb (at 0.8: four in a row at most, and the sender makes six attempts)."""
    clients = []
    for _ in range(count):
        client = await Client.open(http, server)
        await client.subscribe(channel)
        clients.append(client)
    return clients


# -- --throttle-posts ----------------------------------------------------------------------------------------


async def test_throttled_posts_are_retried_so_every_subscriber_gets_a_publish_exactly_once(
    start_server: StartServer,
) -> None:
    # One call in five answers 429. The publish makes 16 posts plus one per 429, so at most 5 of its calls can
    # be throttled (T <= 0.2 (16 + T) + the carried share < 1): no recipient can meet six.
    server = start_server({"apps": [APP]}, args=("--throttle-posts", "0.2"))
    async with aiohttp.ClientSession() as http:
        clients = await subscribers(http, server, 16, "throttled")
        before = (await stats(server))["api_gateway"]
        response = await publish(http, server, "throttled", "hello")
        assert response.status == 200
        # Every post was answered before the REST call returned: what was sent is on its way.
        until = asyncio.get_running_loop().time() + 1
        await asyncio.gather(*(c.read(until) for c in clients))
        after = (await stats(server))["api_gateway"]

    assert [len(c.events("ev")) for c in clients] == [1] * 16
    throttled = after["throttled"] - before["throttled"]
    # Every 429 was retried: one more post each; and 429s fell on a fifth of the calls.
    assert after["posts"] - before["posts"] == 16 + throttled
    assert 3 <= throttled <= 5


async def test_under_heavy_throttling_every_subscriber_gets_a_publish_once_or_is_counted_failed_and_logged(
    start_server: StartServer,
) -> None:
    # Four calls in five answer 429: with six attempts some recipients run out. None may get the event twice,
    # and every one that did not get it is in the metric and in the sender's one log line.
    count = 20  # set up one after the other, ~1.3 s each under this throttling
    server = start_server({"apps": [APP]}, args=("--throttle-posts", "0.8", "--show-emf"))
    async with aiohttp.ClientSession() as http:
        clients = await subscribers(http, server, count, "jammed")
        before = (await stats(server))["api_gateway"]
        response = await publish(http, server, "jammed", "hello", timeout=60)
        assert response.status == 200
        # Every post was answered before the REST call returned: what was sent is on its way.
        until = asyncio.get_running_loop().time() + 1
        await asyncio.gather(*(c.read(until) for c in clients))
        after = (await stats(server))["api_gateway"]

    received = [len(c.events("ev")) for c in clients]
    assert set(received) <= {0, 1}
    failed = emf(server, "ws_messages_failed")  # the subscriptions all succeeded: these are the publish's
    assert sum(received) + failed == count
    assert emf(server, "ws_messages_sent") == count + sum(received)  # the subscription_succeeded frames, then it
    lines = re.findall(r"PostToConnection failed for (\d+) of (\d+) recipients: ([^\"]+)", server.output())
    if failed:
        [(logged, of, causes)] = lines
        assert (int(logged), int(of)) == (failed, count)
        assert causes == f"TooManyRequestsException (after 6 attempts) x{int(failed)}"
    else:
        assert lines == []
    assert after["throttled"] - before["throttled"] > count  # retried, and retried again


# -- --cold-start ----------------------------------------------------------------------------------------------


async def test_a_cold_start_delays_each_new_containers_first_invocation_and_the_welcome_still_arrives(
    start_server: StartServer,
) -> None:
    cold = 1.5
    server = start_server({"apps": [APP]}, args=("--cold-start", str(cold)))
    async with aiohttp.ClientSession() as http:
        first = await Client.open(http, server, timeout=30)
        # $connect ran in a new container before the upgrade, then the welcome in another new one.
        assert first.welcomed_after >= 2 * cold
        data = await stats(server)
        assert (cold_starts(data, "ConnectFunction"), cold_starts(data, "WelcomeFunction")) == (1, 1)
        await first.subscribe("warmed", timeout=30)  # the message function's first container: cold too

        second = await Client.open(http, server, timeout=30)
        await second.subscribe("warmed", timeout=30)
        data = await stats(server)
        # Both reused the warm containers: no new INIT.
        assert (cold_starts(data, "ConnectFunction"), cold_starts(data, "WelcomeFunction")) == (1, 1)
        assert cold_starts(data, "MessageFunction") == 1
        assert invocations(data, "ConnectFunction") == invocations(data, "WelcomeFunction") == 2

        response = await publish(http, server, "warmed", "hello", timeout=30)
        assert response.status == 200
        until = asyncio.get_running_loop().time() + 1
        await asyncio.gather(first.read(until), second.read(until))
    assert [len(c.events("ev")) for c in (first, second)] == [1, 1]


# -- --async-delay -------------------------------------------------------------------------------------------


async def test_event_invocations_wait_in_lambdas_queue_and_every_fan_out_chunk_still_arrives(
    start_server: StartServer,
) -> None:
    delay, count, chunk = 1.5, 7, 2
    # Chunks of 2: the REST invocation posts to 2 recipients and hands 3 chunks (5 recipients) to the fan-out
    # function, each an Event invocation that waits ``delay`` first.
    config = {"apps": [APP], "aws": {"fanout_chunk_size": chunk}}
    server = start_server(config, args=("--async-delay", str(delay)))
    async with aiohttp.ClientSession() as http:
        # The welcome is an Event invocation too ($connect invokes it): every connection waits for it.
        clients = await asyncio.gather(*(Client.open(http, server, timeout=20) for _ in range(count)))
        assert all(c.welcomed_after >= delay for c in clients)
        await asyncio.gather(*(c.subscribe("delayed", timeout=20) for c in clients))

        loop = asyncio.get_running_loop()
        published = loop.time()
        reading = [asyncio.create_task(c.wait_for("ev", published + 3 * delay + 10)) for c in clients]
        response = await publish(http, server, "delayed", "hello", timeout=30)
        assert response.status == 200
        await asyncio.gather(*reading)
        await asyncio.gather(*(c.read(loop.time() + 0.5) for c in clients))  # a second copy would be here
        data = await stats(server)

    arrivals = [c.events("ev") for c in clients]
    assert [len(a) for a in arrivals] == [1] * count
    late = [at for [(at, _frame)] in arrivals if at - published >= delay]
    assert len(late) >= count - chunk  # the handed-on chunks waited in the queue
    assert invocations(data, "FanoutFunction") == (count - chunk + chunk - 1) // chunk
