"""Nodes that stop: SIGTERM (every client told 4200 at once, webhooks flushed, exit 0), SIGKILL (the dead node's
members removed by a survivor once its lease runs out, exactly once), Redis restarted empty (every roster exact
again once the clients have reconnected)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import aiohttp
import redis

from bench.faults.common import (
    APP,
    APP_ID,
    CHANNEL,
    Member,
    Rig,
    duplicates,
    load,
    log_problems,
    session,
    spread,
    until,
    users_on,
)
from shared.redis.keys import RedisKeys
from shared.types import AppId
from tests.webhooks.support import PusherSocket, Receiver


async def _connect_all(http: aiohttp.ClientSession, ws_url: str, count: int, setup: Any) -> list[PusherSocket]:
    """``count`` sockets, 25 at a time, each passed to ``setup(socket, i)``."""
    sockets: list[PusherSocket] = []
    for start in range(0, count, 25):

        async def one(i: int) -> PusherSocket:
            socket = await PusherSocket.connect(http, ws_url, APP)
            await setup(socket, i)
            return socket

        sockets += await asyncio.gather(*(one(i) for i in range(start, min(start + 25, count))))
    return sockets


async def sigterm(clients: int = 200, store: str = "memory") -> dict[str, Any]:
    """``clients`` sockets on one node, each on a channel of its own, half of them also members of a presence
    channel; SIGTERM. Every client must get close 4200 at once, every departure webhook (``channel_vacated`` per
    channel, ``member_removed`` per member, each normally sent 3 s late) must reach the receiver before the
    process exits, once, and the exit status must be 0."""
    rig = Rig()
    receiver = await Receiver().start()
    try:
        hook = {"url": receiver.url(), "event_types": ["channel_vacated", "member_removed"]}
        (node,) = rig.start_nodes(1, [{**APP, "webhooks": [hook]}], store=store)
        assert node.proc is not None
        expected = Counter({("channel_vacated", f"public-{i}"): 1 for i in range(clients)})
        expected[("channel_vacated", CHANNEL)] = 1
        expected.update({("member_removed", f"u{i}"): 1 for i in range(0, clients, 2)})

        async def setup(socket: PusherSocket, i: int) -> None:
            await socket.subscribe(f"public-{i}")
            if i % 2 == 0:
                await socket.subscribe(CHANNEL, f"u{i}", {})

        async with session() as http:
            sockets = await _connect_all(http, node.ws_url, clients, setup)
            load_before = load()

            async def closed(socket: PusherSocket) -> tuple[int | None, float]:
                async for _ in socket.ws:
                    pass
                return socket.ws.close_code, time.monotonic()

            waiting = [asyncio.create_task(closed(s)) for s in sockets]
            await asyncio.sleep(0.2)  # every reader is waiting
            signalled = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            closes = await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)
            exit_code = await asyncio.to_thread(node.proc.wait, 60)
            exited = time.monotonic() - signalled
        got = Counter(
            (e["name"], e["user_id"] if e["name"] == "member_removed" else e["channel"]) for e in receiver.events()
        )
        left = _left_in_redis(rig) if store == "redis" else {}
        return {
            **left,
            "clients": clients,
            "store": store,
            "close_codes": dict(Counter(code for code, _ in closes)),
            "closed_after_s": spread(at - signalled for _, at in closes),
            "exit_code": exit_code,
            "exited_after_s": round(exited, 3),
            "webhooks_expected": sum(expected.values()),
            "webhooks_delivered": len(set(got) & set(expected)),
            "webhooks_duplicated": duplicates(got),
            "webhooks_unexpected": len(set(got) - set(expected)),
            "log": log_problems(node),
            "load": load_before,
        }
    finally:
        await asyncio.to_thread(rig.close)  # the receiver keeps answering while the nodes drain their webhooks
        await receiver.stop()


def _left_in_redis(rig: Rig) -> dict[str, int]:
    """What a stopped node left in Redis: connections of the app, webhook jobs not yet delivered."""
    assert rig.redis is not None
    keys = RedisKeys("faults")
    with redis.Redis.from_url(rig.redis.url) as client:
        conns = keys.connections(AppId(APP_ID))
        size = {"hash": client.hlen, "set": client.scard, "zset": client.zcard}.get(client.type(conns).decode())
        return {
            "connections_left_in_store": int(size(conns)) if size else 0,
            "webhook_jobs_left_in_queue": int(client.hlen(keys.webhook_queue + "jobs")),
        }


async def sigkill(members: int = 25, lease: float = 10.0) -> dict[str, Any]:
    """Two nodes on one Redis; ``members`` presence members on node two and an observer on node one; node two is
    SIGKILLed. The observer must see each member removed once, within the lease (plus the reaper's check), the
    survivor's REST API must list the observer alone, and the receiver must get one ``member_removed`` each."""
    rig = Rig()
    receiver = await Receiver().start()
    try:
        hook = {"url": receiver.url(), "event_types": ["member_removed"]}
        one, two = rig.start_nodes(2, [{**APP, "webhooks": [hook]}], lease=lease)
        assert two.proc is not None
        everyone = {"observer", *(f"m{i}" for i in range(members))}
        async with session() as http:
            observer = Member(http, one.ws_url, "observer").start()
            await asyncio.wait_for(observer.joined.wait(), 10)

            async def setup(socket: PusherSocket, i: int) -> None:
                await socket.subscribe(CHANNEL, f"m{i}", {})

            sockets = await _connect_all(http, two.ws_url, members, setup)  # held: a collected socket closes
            assert await until(lambda: observer.roster == everyone, 20), observer.roster
            load_before = load()
            killed = time.monotonic()
            two.proc.kill()
            gone = await until(lambda: observer.roster == {"observer"}, lease * 3 + 10)
            removed_at = [at - killed for at, _ in observer.removed]
            # Long enough for a second removal (a second reaper) and for the 3 s webhook delay.
            await asyncio.sleep(max(lease, 5.0))
            users = await users_on(http, one)
            await observer.stop()
            del sockets
        frames = Counter(user for _, user in observer.removed)
        hooks = Counter(e["user_id"] for e in receiver.events(name="member_removed"))
        return {
            "members": members,
            "lease_s": lease,
            "all_removed": gone,
            "removed_after_s": spread(removed_at),
            "member_removed_frames": {"distinct": len(frames), "duplicated": duplicates(frames)},
            "member_removed_webhooks": {"distinct": len(hooks), "duplicated": duplicates(hooks)},
            "survivor_lists": users,
            "log": log_problems(one),
            "load": load_before,
        }
    finally:
        await asyncio.to_thread(rig.close)  # the receiver keeps answering while the nodes drain their webhooks
        await receiver.stop()


async def redis_restart(members: int = 50, down: float = 5.0) -> dict[str, Any]:
    """Two nodes on one Redis, ``members`` presence members alternating between them, all joining at once;
    Redis is killed, stays down ``down`` s and comes back empty. Every member must get back in (the nodes close
    their sockets with 4200 once they see the empty Redis, and the clients reconnect, all at once again), both
    nodes' REST answers must list exactly the members, and so should every client's roster: what
    ``subscription_succeeded`` said, then ``member_added``/``member_removed``, as pusher-js keeps it (a
    ``member_added`` that arrives before the subscriber's own ``subscription_succeeded`` is overwritten by it).
    Rosters are counted once before the restart (the first joins) and once after."""
    rig = Rig()
    try:
        nodes = rig.start_nodes(2, [APP])
        redis = rig.redis
        assert redis is not None
        everyone = {f"u{i}" for i in range(members)}
        async with session() as http:
            clients = [Member(http, nodes[i % 2].ws_url, f"u{i}").start() for i in range(members)]

            async def listed_everywhere() -> bool:
                return all([await users_on(http, node) == sorted(everyone) for node in nodes])

            def joined(times: int) -> bool:
                return all(c.joins >= times for c in clients)

            assert await until(lambda: joined(1), 30) and await until(listed_everywhere, 30)
            await asyncio.sleep(1.0)  # member_added frames still on their way
            exact_before = sum(c.roster == everyone for c in clients)
            wrong_before = _wrong_rosters(clients, everyone)
            load_before = load()
            redis.kill()
            await asyncio.sleep(down)
            redis.start()
            restarted = time.monotonic()

            async def converged() -> bool:
                return joined(2) and await listed_everywhere()

            ok = await until(converged, 60, every=0.2)
            took = time.monotonic() - restarted
            await asyncio.sleep(1.0)
            exact_after = sum(c.roster == everyone for c in clients)
            wrong_after = _wrong_rosters(clients, everyone)
            listed = [len(await users_on(http, node)) for node in nodes]
            for client in clients:
                await client.stop()
        return {
            "members": members,
            "redis_down_s": down,
            "converged": ok,
            "converged_after_restart_s": round(took, 2),
            "nodes_list": listed,
            "close_codes": dict(Counter(code for c in clients for code in c.closes)),
            "rejoined": sum(c.joins >= 2 for c in clients),
            "rosters_exact_before": exact_before,
            "rosters_exact_after": exact_after,
            "rosters_wrong": (wrong_before + wrong_after)[:3],
            "log": [log_problems(node) for node in nodes],
            "load": load_before,
        }
    finally:
        rig.close()


def _wrong_rosters(clients: list[Member], everyone: set[str]) -> list[dict[str, Any]]:
    """Clients whose roster is not everyone, with the presence frames that made it (the last session's)."""
    wrong = []
    for client in clients:
        if client.roster != everyone:
            frames = client.presence_frames
            last = len(frames) - frames[::-1].index("connect") - 1 if "connect" in frames else 0
            wrong.append(
                {
                    "user": client.user_id,
                    "missing": sorted(everyone - client.roster),
                    "extra": sorted(client.roster - everyone),
                    "frames": frames[last:],
                }
            )
    return wrong
