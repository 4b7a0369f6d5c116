"""The raw ceiling: a minimal aiohttp server with no Pusher logic (no auth, no signatures, no store).

It accepts `/app/{key}`, answers `pusher:subscribe`, relays client events (no auth, no checks), and on
`POST /apps/{id}/events` builds each frame once and writes the same bytes to every subscriber's transport: the
reference the issue defines, which the sockless figures are compared with in the same benchmark session.

With ``--cork`` it queues each subscriber's frames and sends them once per event-loop iteration, as sockless
does: the same trick with no Pusher logic, so the comparison shows what the Pusher logic costs apart from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random

from aiohttp import WSMsgType, web

from local_server.transport import text_frame

channels: dict[str, dict[int, asyncio.Transport]] = {}
pending: dict[asyncio.Transport, list[bytes]] = {}


def corked_write(transport: asyncio.Transport, frame: bytes) -> None:
    out = pending.get(transport)
    if out is None:
        if not pending:
            asyncio.get_running_loop().call_soon(flush)
        pending[transport] = [frame]
    else:
        out.append(frame)


def flush() -> None:
    items = list(pending.items())
    pending.clear()
    for transport, frames in items:
        if not transport.is_closing():
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


cork = False


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=False, compress=False)
    await ws.prepare(request)
    transport = request.transport
    assert isinstance(transport, asyncio.Transport)
    socket_id = f"{random.randrange(10**9)}.{random.randrange(10**9)}"
    data = json.dumps({"socket_id": socket_id, "activity_timeout": 120})
    await ws.send_str(json.dumps({"event": "pusher:connection_established", "data": data}))
    joined: list[str] = []
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame.get("event") == "pusher:subscribe":
                channel = frame["data"]["channel"]
                channels.setdefault(channel, {})[id(transport)] = transport
                joined.append(channel)
                await ws.send_str(
                    json.dumps({"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"})
                )
            elif frame.get("event") == "pusher:ping":
                await ws.send_str('{"event":"pusher:pong","data":"{}"}')
            elif str(frame.get("event")).startswith("client-"):
                client_event(frame, transport)
    finally:
        for channel in joined:
            channels.get(channel, {}).pop(id(transport), None)
    return ws


def client_event(message: dict[str, object], sender: asyncio.Transport) -> None:
    """A client event: one frame built once, written to every other subscriber of the channel."""
    data = message.get("data")
    channel = str(message.get("channel"))
    encoded = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    frame = text_frame(
        json.dumps({"event": message["event"], "channel": channel, "data": encoded}, separators=(",", ":")).encode()
    )
    for transport in channels.get(channel, {}).values():
        if transport is not sender:
            if cork:
                corked_write(transport, frame)
            else:
                transport.write(frame)


async def events(request: web.Request) -> web.Response:
    body = await request.json()
    for channel in body.get("channels") or [body["channel"]]:
        frame = text_frame(
            json.dumps(
                {"event": body["name"], "channel": channel, "data": body["data"]}, separators=(",", ":")
            ).encode()
        )
        subscribers = channels.get(channel, {}).values()
        if cork:
            for transport in subscribers:
                corked_write(transport, frame)
        else:
            for transport in subscribers:
                transport.write(frame)
    return web.json_response({})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6002)
    parser.add_argument("--cork", action="store_true", help="send each subscriber's frames once per loop iteration")
    args = parser.parse_args()
    global cork
    cork = args.cork
    app = web.Application()
    app.router.add_get("/app/{key}", ws_handler)
    app.router.add_post("/apps/{app_id}/events", events)
    # The same accept backlog as the sockless server, so connection bursts compare Python work, not SYN drops.
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
