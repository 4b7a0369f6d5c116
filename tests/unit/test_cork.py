"""The cork: frames queued per loop iteration go out in order, one write per socket; the task handling a client's
frame writes at once, but never ahead of what is already queued for a socket."""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web

from local_server.transport import MAX_WRITE_BUFFER, Cork, WsTransport, text_frame


class RecordingTransport:
    """Stands in for the event loop's socket transport: records each write."""

    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        pass


class ClosingSocket:
    """Stands in for aiohttp's WebSocketResponse, which the transport only uses to close."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    async def close(self, *, code: int, message: bytes) -> bool:
        self.codes.append(code)
        return True


def socket(cork: Cork, buffered: int = 0) -> tuple[WsTransport, RecordingTransport]:
    raw = RecordingTransport(buffered)
    ws = cast(web.WebSocketResponse, ClosingSocket())
    return WsTransport(ws, cast(asyncio.Transport, raw), 0.0, cork), raw


async def test_frames_of_one_iteration_go_out_together_at_the_next() -> None:
    cork = Cork()
    ws, raw = socket(cork)
    ws.write(b"a")
    ws.write(b"b")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [text_frame(b"a") + text_frame(b"b")]


async def test_the_handling_task_writes_at_once() -> None:
    cork = Cork()
    ws, raw = socket(cork)
    cork.immediate = asyncio.current_task()
    ws.write(b"now")
    assert raw.writes == [text_frame(b"now")]


async def test_an_immediate_write_queues_behind_frames_already_queued() -> None:
    cork = Cork()
    ws, raw = socket(cork)
    ws.write(b"first")
    cork.immediate = asyncio.current_task()
    ws.write(b"second")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [text_frame(b"first") + text_frame(b"second")]


async def test_other_tasks_stay_corked_while_a_handler_is_suspended() -> None:
    cork = Cork()
    ws, raw = socket(cork)
    cork.immediate = asyncio.current_task()

    async def publish() -> None:
        ws.write(b"from a publish")
        assert raw.writes == []

    await asyncio.create_task(publish())
    await asyncio.sleep(0)
    assert raw.writes == [text_frame(b"from a publish")]


async def test_an_immediate_write_past_the_bound_closes_instead_of_writing() -> None:
    cork = Cork()
    ws, raw = socket(cork, buffered=MAX_WRITE_BUFFER)
    cork.immediate = asyncio.current_task()
    ws.write(b"too much")
    for _ in range(5):  # the close runs as its own task
        await asyncio.sleep(0)
    assert raw.writes == []
    assert ws.closing
    assert cast(ClosingSocket, ws.ws).codes == [4100]
