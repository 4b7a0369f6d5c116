"""The cork (local_server/transport.py) over real socket transports: what is written in one loop iteration goes
out at the start of the next, each socket's frames in the order they were written, whether they were queued
one by one or as a whole broadcast; a socket past its write bound is closed with 4100 instead of written to."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aiohttp import web

from local_server.transport import HIGH_WATER, SLOW_CONSUMER_CODE, Cork, WsTransport, text_frame
from shared.sender.local import LocalSender, Transport
from shared.types import AppId, SocketId


class ClosingSocket:
    """Stands in for aiohttp's WebSocketResponse, which the transport only uses to send its close frame."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    async def close(self, *, code: int, message: bytes) -> bool:
        self.codes.append(code)
        return True


class Peer:
    """A socket of the cork's, over a real socket pair: ``ws`` is the server's end, ``received()`` what the
    client's end has been sent so far."""

    def __init__(self, ws: WsTransport, client: socket.socket) -> None:
        self.ws = ws
        self.client = client

    def received(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = self.client.recv(1 << 20)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Cork, list[Peer]]]:
    loop = asyncio.get_running_loop()
    cork = Cork()
    made: list[Peer] = []
    for _ in range(3):
        server, client = socket.socketpair()
        client.setblocking(False)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=server)
        ws = WsTransport(cast(web.WebSocketResponse, ClosingSocket()), transport, loop.time(), cork)
        made.append(Peer(ws, client))
    yield cork, made
    for peer in made:
        peer.ws._transport.abort()
        peer.client.close()


async def next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def frames(*payloads: bytes) -> bytes:
    return b"".join(text_frame(p) for p in payloads)


def fan(cork: Cork, peers: list[Peer], frame: bytes) -> None:
    cork.broadcast(cast(list[Transport], [p.ws for p in peers]), frame)


async def test_a_broadcast_goes_out_at_the_next_iteration_to_every_socket(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, c) = peers
    fan(cork, [a, b, c], b"hello")
    assert a.received() == b""
    await next_iteration()
    assert [p.received() for p in (a, b, c)] == [frames(b"hello")] * 3


async def test_frames_written_before_and_after_a_broadcast_keep_their_order(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, c) = peers
    a.ws.write(b"before")
    fan(cork, [a, b], b"all")
    b.ws.write(b"after")
    fan(cork, [b, c], b"again")
    await next_iteration()
    assert a.received() == frames(b"before", b"all")
    assert b.received() == frames(b"all", b"after", b"again")
    assert c.received() == frames(b"again")


async def test_a_frame_written_after_a_kept_broadcast_follows_it(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, _) = peers
    fan(cork, [a, b], b"first")
    a.ws.write(b"second")
    await next_iteration()
    assert a.received() == frames(b"first", b"second")
    assert b.received() == frames(b"first")


async def test_a_second_broadcast_keeps_the_first_ahead_of_frames_queued_between(
    peers: tuple[Cork, list[Peer]],
) -> None:
    cork, (a, b, c) = peers
    fan(cork, [a, b], b"first")
    a.ws.write(b"second")
    fan(cork, [a, c], b"third")
    await next_iteration()
    assert a.received() == frames(b"first", b"second", b"third")
    assert b.received() == frames(b"first")
    assert c.received() == frames(b"third")


async def test_a_socket_flushed_for_its_close_sends_the_broadcast_first(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, _) = peers
    fan(cork, [a, b], b"last words")
    await a.ws.close(4009, "terminated")
    assert a.received() == frames(b"last words")
    assert cast(ClosingSocket, a.ws.ws).codes == [4009]
    await next_iteration()
    assert b.received() == frames(b"last words")
    assert a.received() == b""  # nothing after the close


async def test_a_closing_socket_gets_nothing_more(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, _) = peers
    fan(cork, [a, b], b"one")
    a.ws.closing = True
    await next_iteration()
    assert a.received() == b""
    assert b.received() == frames(b"one")


def back_up(peer: Peer) -> int:
    """Fill the kernel's buffers and then the transport's: the client reads nothing."""
    stuffing = b"x" * (4 << 20)
    peer.ws._transport.write(stuffing)
    assert peer.ws._transport.get_write_buffer_size() > HIGH_WATER
    return len(stuffing)


async def drain(peer: Peer, want: int, timeout: float = 5.0) -> bytes:
    """Read as the client until ``want`` bytes have arrived (the pump runs meanwhile)."""
    data = b""
    async with asyncio.timeout(timeout):
        while len(data) < want:
            data += peer.received()
            await asyncio.sleep(0.005)
    return data


async def test_frames_for_a_backed_up_socket_are_held_and_follow_once_it_reads(
    peers: tuple[Cork, list[Peer]],
) -> None:
    cork, (a, b, _) = peers
    stuffed = back_up(a)
    fan(cork, [a, b], b"one")
    a.ws.write(b"two")
    await next_iteration()
    assert b.received() == frames(b"one")
    assert cork.held == {a.ws} and cork.held_total == len(frames(b"one", b"two"))
    data = await drain(a, stuffed + len(frames(b"one", b"two")))
    assert data[stuffed:] == frames(b"one", b"two")
    assert cork.held_total == 0 and not cork.held


async def test_a_socket_holding_more_than_its_bound_is_closed_with_4100(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, _) = peers
    cork.max_socket = 64 * 1024
    back_up(a)
    for _ in range(10):
        fan(cork, [a, b], b"y" * 8000)
        await next_iteration()
    for _ in range(5):  # the close runs as a task of its own
        await asyncio.sleep(0)
    assert a.ws.closing
    assert cast(ClosingSocket, a.ws.ws).codes == [SLOW_CONSUMER_CODE]
    assert cork.held_total == 0  # what it held is dropped, not sent ahead of the close frame
    assert len(b.received()) == 10 * len(frames(b"y" * 8000))


async def test_over_the_process_budget_the_socket_holding_most_is_closed_first(
    peers: tuple[Cork, list[Peer]],
) -> None:
    cork, (a, b, c) = peers
    cork.budget = 100_000
    for peer in (a, b, c):
        back_up(peer)
    for _ in range(3):
        a.ws.write(b"a" * 10_000)  # a falls furthest behind
    await next_iteration()
    for _ in range(3):
        fan(cork, [a, b, c], b"z" * 10_000)
        await next_iteration()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [p.ws.closing for p in (a, b, c)] == [True, False, False]
    assert cast(ClosingSocket, a.ws.ws).codes == [SLOW_CONSUMER_CODE]
    assert cork.held_total <= cork.budget
    assert cork.held == {b.ws, c.ws}


async def test_a_close_sends_held_frames_before_the_close_frame(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, _, _) = peers
    stuffed = back_up(a)
    a.ws.write(b"goodbye soon")
    await next_iteration()
    assert cork.held_total
    await a.ws.close(4200, "restart")
    assert cork.held_total == 0
    assert cast(ClosingSocket, a.ws.ws).codes == [4200]
    assert (await drain(a, stuffed + len(frames(b"goodbye soon"))))[stuffed:] == frames(b"goodbye soon")


async def test_the_local_senders_broadcast_goes_through_the_cork(peers: tuple[Cork, list[Peer]]) -> None:
    cork, (a, b, c) = peers
    sender = LocalSender(fanout=cork.broadcast)
    for i, peer in enumerate((a, b, c)):
        sender.register(SocketId(f"1.{i}"), peer.ws)
    ids = [SocketId("1.0"), SocketId("1.1"), SocketId("1.2"), SocketId("9.9")]
    delivery = await sender.broadcast(AppId("app"), ids, b"event", except_socket=SocketId("1.1"))
    assert (delivery.sent, delivery.gone) == (2, (SocketId("9.9"),))
    assert cork.batch is not None  # queued as one entry
    await next_iteration()
    assert [p.received() for p in (a, b, c)] == [frames(b"event"), b"", frames(b"event")]
