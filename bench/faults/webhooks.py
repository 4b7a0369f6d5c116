"""A webhook receiver that is down for a while (connection refused) while two nodes keep emitting: once it is
back, every event whose state still holds must arrive, and none twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.faults.common import APP, APP_ID, Rig, duplicates, load, log_problems, session, spread, until
from local_server.ports import free_port
from tests.support import metric
from tests.webhooks.support import PusherSocket, Receiver

PRESENCE = "presence-w"
MEMBERS = 90  # under the app's 100 members per presence channel


async def receiver_down(
    down: float = 60.0, rate: float = 2.0, max_backoff: float | None = None, delay: float | None = None
) -> dict[str, Any]:
    """Two nodes on one Redis (shared webhook queue), a webhook URL nothing listens on for ``down`` s. Meanwhile,
    ``rate`` times a second, alternating nodes: a client occupies ``w-<n>`` and stays (``channel_occupied``; the
    first 90 also join ``presence-w``: ``member_added``), and another occupies ``v-<n>`` and leaves at once
    (``channel_vacated`` 3 s later). Then the receiver starts. Every event whose state still holds must reach it
    exactly once, by the retries (exponential backoff up to ``webhooks.retry_max_backoff_seconds``, 60 s by
    default, within the 300 s retry window). A retried ``channel_occupied`` of a ``v-<n>`` that is empty again is
    dropped by design (docs/webhooks.md#retries-and-losses): counted apart, as superseded."""
    rig = Rig()
    port = free_port()
    receiver = Receiver()
    try:
        hook = {
            "url": f"http://127.0.0.1:{port}/hook",
            "event_types": ["channel_occupied", "channel_vacated", "member_added"],
        }
        settings: dict[str, Any] = {}
        if max_backoff is not None:
            settings["retry_max_backoff_seconds"] = max_backoff
        if delay is not None:
            settings["delay_seconds"] = delay
        nodes = rig.start_nodes(2, [{**APP, "webhooks": [hook]}], webhooks=settings)
        load_before = load()
        expected: set[tuple[str, str]] = set()
        superseded: set[tuple[str, str]] = set()
        staying: list[PusherSocket] = []
        async with session() as http:
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < down:
                node = nodes[n % 2]
                stays = await PusherSocket.connect(http, node.ws_url, APP)
                await stays.subscribe(f"w-{n}")
                expected.add(("channel_occupied", f"w-{n}"))
                if n < MEMBERS:
                    await stays.subscribe(PRESENCE, f"u{n}", {})
                    expected |= {("member_added", f"u{n}"), ("channel_occupied", PRESENCE)}
                staying.append(stays)
                leaves = await PusherSocket.connect(http, node.ws_url, APP)
                await leaves.subscribe(f"v-{n}")
                await leaves.close()
                expected.add(("channel_vacated", f"v-{n}"))
                superseded.add(("channel_occupied", f"v-{n}"))
                n += 1
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            await receiver.start(port)
            up = time.monotonic()
            longest = (max_backoff or 60.0) * 1.5 + (delay if delay is not None else 3.0) + 30
            complete = await until(lambda: expected <= _received(receiver), longest, every=0.2)
            last = max((r.at for r in receiver.requests), default=up)
            await asyncio.sleep(5.0)  # a duplicate would come now
            got = Counter(_key(e) for e in receiver.events())
            failed = sum([await metric(node, "sockless_webhooks_failed_total", app_id=APP_ID) for node in nodes])
            lost = sum([await metric(node, "sockless_webhooks_lost_total", app_id=APP_ID) for node in nodes])
            for socket in staying:
                await socket.close()
        return {
            "receiver_down_s": down,
            "events_expected": len(expected),
            "events_delivered": len(set(got) & expected),
            "events_duplicated": duplicates(got),
            "complete": complete,
            "missing": sorted(f"{name} {subject}" for name, subject in expected - set(got))[:10],
            "superseded_dropped": len(superseded - set(got)),
            "superseded_delivered": len(superseded & set(got)),
            "unexpected": len(set(got) - expected - superseded),
            "last_delivery_after_up_s": round(last - up, 1),
            "requests": len(receiver.requests),
            "request_arrivals_after_up_s": spread(r.at - up for r in receiver.requests),
            "failed_attempts": failed,
            "lost": lost,
            "log": [log_problems(node) for node in nodes],
            "load": load_before,
        }
    finally:
        await asyncio.to_thread(rig.close)  # the receiver keeps answering while the nodes drain their webhooks
        await receiver.stop()


def _key(event: dict[str, Any]) -> tuple[str, str]:
    return (event["name"], str(event["user_id"]) if event["name"] == "member_added" else event["channel"])


def _received(receiver: Receiver) -> set[tuple[str, str]]:
    return {_key(e) for e in receiver.events()}
