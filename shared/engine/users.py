"""User sign-in and watchlists (docs/sources.md#sign-in-server-to-user-and-watchlists), over ``UsersEngine``."""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

from shared.auth import check_signin
from shared.engine.outbox import Outbox
from shared.errors import FrameError, PusherError, Unauthorized, WatchlistTooLong
from shared.protocol import frames
from shared.protocol.channels import valid_user_id
from shared.settings import AppConfig
from shared.store.base import ChannelStore
from shared.types import SocketId, UserId

MAX_WATCHLIST = 100


class UsersEngine(Outbox, Protocol):
    """What these operations use of the engine (``Engine`` is one)."""

    @property
    def store(self) -> ChannelStore: ...

    async def refuse(self, app: AppConfig, socket_id: SocketId, exc: PusherError) -> None:
        """Tell the client of a protocol error (a ``pusher:error`` frame)."""
        ...


def as_user_id(value: str) -> UserId:
    return UserId(value)


async def signin(engine: UsersEngine, app: AppConfig, socket_id: SocketId, data: dict[str, Any]) -> None:
    if not app.enable_user_authentication:
        raise FrameError("User authentication is not enabled for this app")
    user_data = data.get("user_data")
    if not isinstance(user_data, str):
        raise Unauthorized("Invalid signin: user_data must be a JSON string")
    if not check_signin(app.key, app.secret, data.get("auth"), socket_id, user_data):
        raise Unauthorized("Invalid signin: signature does not match")
    try:
        user = json.loads(user_data)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        raise Unauthorized("Invalid signin: user_data is not valid JSON") from None
    if not isinstance(user, dict) or not valid_user_id(user.get("id")):
        raise Unauthorized("Invalid signin: user_data needs a non-empty string id")
    user_id = UserId(user["id"])
    connection = await engine.store.get_connection(app.id, socket_id)
    if connection is not None and connection.user_id is not None and connection.user_id != user_id:
        raise Unauthorized("Connection is already signed in as another user")

    raw_watchlist = user.get("watchlist") if app.enable_watchlist_events else None
    watchlist: list[UserId] = []
    too_long = False
    if isinstance(raw_watchlist, list):
        ids = [UserId(str(w)) for w in raw_watchlist if isinstance(w, str | int) and not isinstance(w, bool)]
        too_long = len(ids) > MAX_WATCHLIST
        watchlist = list(dict.fromkeys(ids))[:MAX_WATCHLIST]

    first = await engine.store.sign_in(app.id, socket_id, user_id, user_data, tuple(watchlist))
    await engine.send(app, socket_id, frames.frame("pusher:signin_success", {"user_data": user_data}))
    if too_long:
        await engine.refuse(
            app, socket_id, WatchlistTooLong(f"Watchlist over {MAX_WATCHLIST} ids: first {MAX_WATCHLIST} accepted")
        )
    if watchlist:
        online = await engine.store.online(app.id, watchlist)
        events = [
            {"name": "online", "user_ids": [u for u in watchlist if u in online]},
            {"name": "offline", "user_ids": [u for u in watchlist if u not in online]},
        ]
        events = [e for e in events if e["user_ids"]]
        await engine.send(app, socket_id, frames.frame("pusher_internal:watchlist_events", {"events": events}))
    if first:
        await notify_watchers(engine, app, user_id, "online")


async def notify_watchers(
    engine: UsersEngine, app: AppConfig, user_id: UserId, status: Literal["online", "offline"]
) -> None:
    if not app.enable_watchlist_events:
        return
    watchers = await engine.store.watchers(app.id, user_id)
    if watchers:
        frame = frames.frame("pusher_internal:watchlist_events", {"events": [{"name": status, "user_ids": [user_id]}]})
        await engine.broadcast(app, watchers, frame)
