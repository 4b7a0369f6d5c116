"""A subscriber that stops reading must not grow the server's memory without bound nor hold back the others:
past its write bound the server closes it with 4100 (pusher-js backs off and reconnects)."""

from __future__ import annotations

import asyncio
import json
import struct

import aiohttp

from local_server.transport import MAX_WRITE_BUFFER
from tests.serverproc import ServerProcess
from tests.support import next_frame, open_stalling, publish_batch, text_frame

PATH = "/app/app-key?protocol=7&client=raw&version=0"
EVENT_DATA = "x" * 9_000  # under the default 10 KB event limit
BATCH = 10  # events per batch request (the default batch limit)


async def test_stalled_subscriber_is_closed_with_4100_and_the_others_get_every_event(server: ServerProcess) -> None:
    # Enough to fill the kernel's buffers (a few MB on loopback) and then the server's write bound.
    batches = (MAX_WRITE_BUFFER + 8 * 1024 * 1024) // (len(EVENT_DATA) * BATCH) + 1
    reader, writer = await open_stalling(server.port)
    assert json.loads((await next_frame(reader))[1])["event"] == "pusher:connection_established"
    writer.write(text_frame({"event": "pusher:subscribe", "data": {"channel": "feed"}}))
    assert json.loads((await next_frame(reader))[1])["event"] == "pusher_internal:subscription_succeeded"
    # From here on the raw client reads nothing until every event has been published.

    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url + PATH) as healthy:
        await healthy.receive_json()  # connection_established
        await healthy.send_json({"event": "pusher:subscribe", "data": {"channel": "feed"}})
        assert (await healthy.receive_json())["event"] == "pusher_internal:subscription_succeeded"

        async def count_events() -> int:
            seen = 0
            while seen < batches * BATCH:
                message = await healthy.receive_json(timeout=20)
                seen += message["event"] == "bulk"
            return seen

        counting = asyncio.create_task(count_events())
        for _ in range(batches):
            await publish_batch(http, server, "feed", EVENT_DATA, BATCH)
        assert await counting == batches * BATCH

        # The stalled client reads again: what the server had buffered, then its close frame.
        received = 0
        while True:
            opcode, payload = await asyncio.wait_for(next_frame(reader), 10)
            if opcode == 0x8:
                break
            received += 1
        assert struct.unpack("!H", payload[:2])[0] == 4100
        assert received < batches * BATCH  # frames past the bound were never queued for it
        writer.close()

        # The server goes on serving the healthy client (the default app also reports subscription counts).
        await publish_batch(http, server, "feed", EVENT_DATA, BATCH)
        while (await healthy.receive_json(timeout=5))["event"] != "bulk":
            pass
