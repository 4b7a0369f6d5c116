"""Random frames and REST calls against two nodes on one Redis: every answer a refusal or a success, never a
5xx, never an ERROR or a traceback in the log, both nodes up at the end.

The generators favour what reaches deep: most frames are well-formed Pusher events with one field wrong, and
half the REST calls are correctly signed, so they get past authentication to the body checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.faults.common import APP, APP_ID, Rig, load, log_problems, session
from shared.auth import sign_channel, sign_request
from tests.serverproc import ServerProcess

CHARS = "abcXYZ019-_=@,.;"
ODD = ["", " ", "#", "%", "/", "?", "\\", "\x00", "\n", "é", "😀", "\ud800", "*", "..", "{}", "null"]
PREFIXES = ["", "private-", "presence-", "private-encrypted-", "cache-", "private-cache-", "presence-cache-", "#"]
EVENTS = [
    "pusher:subscribe",
    "pusher:unsubscribe",
    "pusher:ping",
    "pusher:pong",
    "pusher:signin",
    "client-x",
    "client-",
    "pusher:",
    "pusher:connection_established",
    "pusher_internal:member_added",
    "other",
]


def channel_name(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return rng.choice(PREFIXES) + "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 12)))
    return rng.choice(PREFIXES) + rng.choice([*ODD, "x" * rng.choice([164, 200, 201, 1000])])


def any_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1e308, 0.5])
    if kind == 2:
        return rng.choice([*ODD, "x" * rng.choice([1, 1000, 12000])])
    if kind == 3:
        return rng.randint(-(2**40), 2**40)
    if kind == 4:
        return channel_name(rng)
    if kind == 5:
        return [any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["channel", "auth", "channel_data", "user_data", "data", "event", "name", "user_id", "socket_id"]
    return {rng.choice([*keys, *ODD]): any_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def frame(rng: random.Random, socket_id: str) -> str | bytes:
    """One client frame: text (mostly JSON) or binary."""
    kind = rng.random()
    if kind < 0.05:
        return rng.randbytes(rng.randint(0, 300))
    if kind < 0.10:
        return "".join(rng.choice(ODD + list(CHARS)) for _ in range(rng.randint(0, 50)))
    if kind < 0.13:
        depth = rng.choice([100, 1000, 100_000])
        return "[" * depth + "]" * depth
    if kind < 0.16:
        return json.dumps({"event": "client-big", "channel": "private-x", "data": "x" * rng.choice([10_241, 200_000])})
    if kind < 0.25:
        return json.dumps(any_json(rng))
    message: dict[str, Any] = {"event": rng.choice(EVENTS)}
    channel = channel_name(rng)
    data: Any = {"channel": channel}
    if channel.startswith(("private-", "presence-")) and rng.random() < 0.6:
        channel_data = None
        if channel.startswith("presence-"):
            channel_data = rng.choice(
                [
                    json.dumps({"user_id": any_json(rng), "user_info": any_json(rng)}),
                    json.dumps({"user_id": f"u{rng.randrange(5)}"}),
                    json.dumps(any_json(rng)),
                    "{",
                ]
            )
            data["channel_data"] = channel_data
        try:
            signature = sign_channel(APP["secret"], socket_id, channel, channel_data)
        except UnicodeEncodeError:  # a lone surrogate: no client could have signed it either
            signature = "0" * 64
        data["auth"] = f"{APP['key']}:{signature}" if rng.random() < 0.8 else f"{APP['key']}:{signature[::-1]}"
    if rng.random() < 0.3:
        data = any_json(rng) if rng.random() < 0.5 else json.dumps(data)
    message["data"] = data
    if message["event"].startswith("client-") or rng.random() < 0.2:
        message["channel"] = channel if rng.random() < 0.8 else any_json(rng)
    if rng.random() < 0.1:
        message[rng.choice(ODD)] = any_json(rng)
    return json.dumps(message)


ROUTES = [
    ("POST", "/apps/{id}/events"),
    ("POST", "/apps/{id}/batch_events"),
    ("GET", "/apps/{id}/channels"),
    ("GET", "/apps/{id}/channels/{channel}"),
    ("GET", "/apps/{id}/channels/{channel}/users"),
    ("POST", "/apps/{id}/users/{user}/terminate_connections"),
    ("GET", "/up"),
    ("GET", "/up/{id}"),
    ("GET", "/"),
    ("GET", "/openapi.json"),
    ("GET", "/app/{key}"),
    ("GET", "/apps/{id}"),
    ("GET", "/apps"),
    ("GET", "/{junk}"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def body(rng: random.Random) -> bytes:
    kind = rng.random()
    event = {"name": "ev", "channel": channel_name(rng), "data": "{}"}
    if kind < 0.3:
        event = {k: any_json(rng) if rng.random() < 0.2 else v for k, v in event.items()}
        if rng.random() < 0.3:
            event["channels"] = [channel_name(rng) for _ in range(rng.choice([0, 1, 3, 101]))]
        return json.dumps(event).encode()
    if kind < 0.45:
        return json.dumps(
            {"batch": [event] * rng.choice([0, 1, 10, 11]) if rng.random() < 0.8 else any_json(rng)}
        ).encode()
    if kind < 0.6:
        return json.dumps(any_json(rng)).encode()
    if kind < 0.7:
        return rng.randbytes(rng.randint(0, 500))
    if kind < 0.75:
        return b"{" * rng.choice([10, 100_000])
    if kind < 0.8:
        return b'{"name":"ev","channel":"c","data":"' + b"x" * rng.choice([10_300, 1_100_000]) + b'"}'
    return b""


def request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes, dict[str, str]]:
    """(method, path, query, body, headers); half of them signed for the path, method and body they carry."""
    method, path = rng.choice(ROUTES)
    if rng.random() < 0.2:
        method = rng.choice(METHODS)
    fill = {
        "id": APP_ID if rng.random() < 0.8 else rng.choice(["999", "x", "%2e%2e", "100001%00", "1" * 300]),
        "channel": channel_name(rng),
        "user": rng.choice(["u1", *ODD, "x" * 300]),
        "key": rng.choice([APP["key"], "nope"]),
        "junk": "".join(rng.choice(CHARS + "/%") for _ in range(rng.randint(0, 40))),
    }
    path = path.format(**{k: _quote(v) for k, v in fill.items()})
    payload = body(rng) if method in ("POST", "PUT", "PATCH") or rng.random() < 0.1 else b""
    query: dict[str, str] = {}
    if rng.random() < 0.3:
        query["info"] = rng.choice(["user_count", "subscription_count,user_count", "occupied", "x" * 100, ""])
    if rng.random() < 0.2:
        query["filter_by_prefix"] = rng.choice(["presence-", "private-", "", "#"])
    if rng.random() < 0.9:
        query.update(auth_key=APP["key"], auth_timestamp=str(int(time.time())), auth_version="1.0")
        if payload:
            query["body_md5"] = hashlib.md5(payload).hexdigest()
        if rng.random() < 0.1:
            query[rng.choice(["auth_timestamp", "auth_version", "auth_key", "body_md5"])] = rng.choice(["", "x", "0"])
        signature = sign_request(APP["secret"], method, path, query)
        query["auth_signature"] = signature if rng.random() < 0.6 else signature[:-1] + "0"
    headers = {}
    if rng.random() < 0.1:
        headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br", "x"])
    if rng.random() < 0.1:
        headers["Content-Type"] = rng.choice(["application/json", "text/plain", "multipart/form-data", "x"])
    return method, path, query, payload, headers


def _quote(value: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.=@,;") else f"%{ord(c) & 0xFF:02X}" for c in value)


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.no_answer: Counter[str] = Counter()
        self.server_errors: list[dict[str, Any]] = []
        self.unanswered: list[dict[str, Any]] = []
        self.unparsed: Counter[int] = Counter()
        self.frames = 0
        self.closes: Counter[int | None] = Counter()
        self.connects_failed = 0


async def rest_fuzzer(
    http: aiohttp.ClientSession, nodes: list[ServerProcess], rng: random.Random, until: float, tally: Tally
) -> None:
    while time.monotonic() < until:
        method, path, query, payload, headers = request(rng)
        node = rng.choice(nodes)
        try:
            async with http.request(
                method,
                node.url + path,
                params=query,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=45),  # past the server's 30 s body deadline
                allow_redirects=False,
            ) as response:
                text = await response.text(errors="replace")
        except aiohttp.ClientResponseError as exc:
            # An answer the client library refused to parse: aiohttp's own parser answers a HEAD carrying a
            # Content-Encoding it cannot decode with a 400 that has a body.
            tally.statuses[exc.status] += 1
            tally.unparsed[exc.status] += 1
            continue
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            kind = type(exc).__name__
            tally.no_answer[kind] += 1
            if sum(u["error"].startswith(kind) for u in tally.unanswered) < 3:
                sent = {"method": method, "path": path[:120], "body_bytes": len(payload), "headers": headers}
                tally.unanswered.append({**sent, "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        tally.statuses[response.status] += 1
        if response.status >= 500 and len(tally.server_errors) < 20:
            tally.server_errors.append(
                {"method": method, "path": path[:200], "status": response.status, "body": text[:200]}
            )


async def socket_fuzzer(
    http: aiohttp.ClientSession, nodes: list[ServerProcess], rng: random.Random, until: float, tally: Tally
) -> None:
    while time.monotonic() < until:
        node = rng.choice(nodes)
        try:
            async with http.ws_connect(
                f"{node.ws_url}/app/{APP['key']}?protocol=7&client=fuzz&version=1", max_msg_size=0
            ) as ws:
                welcome = await ws.receive_json(timeout=10)
                socket_id = json.loads(welcome["data"])["socket_id"]
                reader = asyncio.create_task(_drain(ws))
                for _ in range(rng.randint(1, 200)):
                    if ws.closed or time.monotonic() > until:
                        break
                    message = frame(rng, socket_id)
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                    elif "\ud800" in message:  # not UTF-8: a text frame the server must refuse
                        await ws.send_frame(message.encode("utf-8", "surrogatepass"), aiohttp.WSMsgType.TEXT)
                    else:
                        await ws.send_str(message)
                    tally.frames += 1
                    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01]))
                if not ws.closed:
                    await ws.close()
                await reader
                tally.closes[ws.close_code] += 1
        except (aiohttp.ClientError, TimeoutError, OSError, ConnectionError):
            tally.connects_failed += 1
            await asyncio.sleep(0.1)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def fuzz(seconds: float = 120.0, sockets: int = 6, rest: int = 4, seed: int | None = None) -> dict[str, Any]:
    """``sockets`` WebSockets sending random frames (reconnecting when closed) and ``rest`` REST callers, for
    ``seconds``, spread over two nodes. Counts every HTTP status and close code."""
    seed = seed if seed is not None else random.randrange(2**32)
    rig = Rig()
    try:
        nodes = rig.start_nodes(2, [APP])
        tally = Tally()
        load_before = load()
        async with session() as http:
            deadline = time.monotonic() + seconds
            await asyncio.gather(
                *(socket_fuzzer(http, nodes, random.Random(seed * 1000 + i), deadline, tally) for i in range(sockets)),
                *(rest_fuzzer(http, nodes, random.Random(seed * 1000 + 500 + i), deadline, tally) for i in range(rest)),
            )
            health = []
            for node in nodes:
                async with http.get(node.url + "/up") as response:
                    health.append(response.status)
        return {
            "seconds_fuzzed": seconds,
            "seed": seed,
            "rest_calls": sum(tally.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
            "status_5xx": sum(v for k, v in tally.statuses.items() if k >= 500),
            "answers_the_client_could_not_parse": {str(k): v for k, v in tally.unparsed.items()},
            "no_answer": dict(tally.no_answer),
            "no_answer_samples": tally.unanswered,
            "server_errors": tally.server_errors,
            "frames": tally.frames,
            "close_codes": {str(k): v for k, v in tally.closes.items()},
            "ws_connects_failed": tally.connects_failed,
            "nodes_alive": [node.proc is not None and node.proc.poll() is None for node in nodes],
            "health": health,
            "log": [log_problems(node) for node in nodes],
            "load": load_before,
        }
    finally:
        rig.close()
