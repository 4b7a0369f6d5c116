"""The raw ceiling: a minimal aiohttp server with no Pusher logic (no auth, no signatures, no store).

It accepts `/app/{key}`, answers `pusher:subscribe`, and on `POST /apps/{id}/events` builds each frame once and
writes the same bytes to every subscriber's transport. It is the most a Python server can do on this machine,
the reference the sockless figures are compared with in the same benchmark session.
"""

from __future__ import annotations

import argparse
import json
import random

from aiohttp import WSMsgType, web

from local_server.transport import text_frame

channels: dict[str, dict[int, object]] = {}


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=False, compress=False)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
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
    finally:
        for channel in joined:
            channels.get(channel, {}).pop(id(transport), None)
    return ws


async def events(request: web.Request) -> web.Response:
    body = await request.json()
    for channel in body.get("channels") or [body["channel"]]:
        frame = text_frame(
            json.dumps(
                {"event": body["name"], "channel": channel, "data": body["data"]}, separators=(",", ":")
            ).encode()
        )
        for transport in channels.get(channel, {}).values():
            transport.write(frame)  # type: ignore[attr-defined]
    return web.json_response({})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6002)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/app/{key}", ws_handler)
    app.router.add_post("/apps/{app_id}/events", events)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
