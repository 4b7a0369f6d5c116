"""#19.2: a client that does not read is closed with 4100 that it sees once it reads again, the frames held for
slow clients are bounded per socket and per process (the slowest closed first), and the memory comes back."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator

import aiohttp
import pytest

from local_server.transport import CLOSE_WAIT
from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess
from tests.support import metric, next_frame, open_stalling, publish_batch, text_frame

EVENT = "x" * 9_000
PER_SOCKET_KB = 1024
BUDGET_MB = 3


@pytest.fixture(scope="module")
def bounded() -> Iterator[ServerProcess]:
    config = {
        "apps": [{**DEFAULT_APP, "enable_subscription_count": False}],  # no frames but the ones published
        "transport": {"max_write_buffer_kb": PER_SOCKET_KB, "write_budget_mb": BUDGET_MB},
    }
    proc = ServerProcess(config).start()
    yield proc
    proc.cleanup()


class Stalled:
    """A raw WebSocket client with a 4 KB receive buffer that stops reading after subscribing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket_id: str) -> None:
        self.reader, self.writer, self.socket_id = reader, writer, socket_id

    @classmethod
    async def connect(cls, port: int, *channels: str) -> Stalled:
        reader, writer = await open_stalling(port)
        welcome = json.loads((await next_frame(reader))[1])
        client = cls(reader, writer, json.loads(welcome["data"])["socket_id"])
        for channel in channels:
            writer.write(text_frame({"event": "pusher:subscribe", "data": {"channel": channel}}))
            assert json.loads((await next_frame(reader))[1])["event"] == "pusher_internal:subscription_succeeded"
        return client

    async def close_code(self, timeout: float = 20) -> int | None:
        """Read what the server sent until its close frame (its code) or the end of the stream (None)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    opcode, payload = await next_frame(self.reader)
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    return None
                if opcode == 0x8:
                    return int(struct.unpack("!H", payload[:2])[0])


async def publish_until_closed(http: aiohttp.ClientSession, server: ServerProcess, channel: str, closes: int) -> int:
    """Publish batches (90 KB each) until the server has closed ``closes`` slow sockets in all."""
    for sent in range(1, 400):
        await publish_batch(http, server, channel, EVENT)
        if await metric(server, "sockless_slow_consumers_closed_total") >= closes:
            return sent
    raise AssertionError("no slow socket was closed")


async def test_a_stalled_client_sees_4100_when_it_reads_again_after_the_close_wait(
    bounded: ServerProcess, http: aiohttp.ClientSession
) -> None:
    before = await metric(bounded, "sockless_slow_consumers_closed_total")
    stalled = await Stalled.connect(bounded.port, "feed-a")
    await publish_until_closed(http, bounded, "feed-a", int(before) + 1)
    # The client answers nothing for longer than the server waits for its close frame...
    await asyncio.sleep(CLOSE_WAIT + 1)
    # ...and still finds the close frame, after at most a few hundred KB, when it reads.
    assert await stalled.close_code() == 4100
    stalled.writer.close()
    assert await metric(bounded, "sockless_refusals_total", kind="websocket", code="4100") >= 1


async def test_past_the_process_budget_the_client_furthest_behind_is_closed_first(
    bounded: ServerProcess, http: aiohttp.ClientSession
) -> None:
    before = int(await metric(bounded, "sockless_slow_consumers_closed_total"))
    laggard = await Stalled.connect(bounded.port, "feed-b", "extra")
    others = [await Stalled.connect(bounded.port, "feed-b") for _ in range(5)]
    for _ in range(5):  # only the laggard gets these: it is the furthest behind from here on
        await publish_batch(http, bounded, "extra", EVENT)
    # Six sockets hold under 1 MB each (their own bound) but together more than the 3 MB budget.
    await publish_until_closed(http, bounded, "feed-b", before + 1)
    assert await metric(bounded, "sockless_write_held_bytes") <= BUDGET_MB * 1024 * 1024
    assert await metric(bounded, "sockless_write_held_sockets") == 5  # the five others, still open
    assert await laggard.close_code() == 4100
    for client in (laggard, *others):
        client.writer.close()
    async with asyncio.timeout(10):  # what was held for them is released as they go
        while await metric(bounded, "sockless_write_held_bytes") > 0:
            await asyncio.sleep(0.05)
