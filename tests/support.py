"""Test support shared by the fault, end-to-end and debug tests (and bench/): raw WebSocket clients that
misbehave on purpose, signed REST calls, the server's metrics and log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shared.auth.signatures import sign_request
from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess

APP_ID: str = DEFAULT_APP["id"]

UPGRADE = (
    "GET /app/{key}?protocol=7&client=raw&version=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def upgrade_request(key: str = "app-key") -> bytes:
    return UPGRADE.format(key=key, nonce=base64.b64encode(os.urandom(16)).decode()).encode()


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def open_stalling(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket, upgraded, with a 4 KB kernel receive buffer: once it stops reading, the backlog is the
    server's, not the kernel's."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    writer.write(upgrade_request())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (raises TimeoutError if it never does)."""
    data = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


async def next_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return head[0] & 0x0F, await reader.readexactly(size)


def text_frame(message: dict[str, Any]) -> bytes:
    """A masked (zero key) client text frame."""
    payload = json.dumps(message).encode()
    if len(payload) < 126:
        return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload
    return struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + b"\0\0\0\0" + payload


def signed_params(
    method: str, path: str, body: bytes, key: str = "app-key", secret: str = "app-secret"
) -> dict[str, str]:
    params = {"auth_key": key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
    if body:
        params["body_md5"] = hashlib.md5(body).hexdigest()
    params["auth_signature"] = sign_request(secret, method, path, params)
    return params


async def post_signed(
    http: aiohttp.ClientSession, server: ServerProcess, path: str, payload: Any, timeout: float = 10.0
) -> aiohttp.ClientResponse:
    """A signed REST POST of ``payload`` (JSON) for the default app; the response, its body read."""
    body = json.dumps(payload).encode()
    async with http.post(
        server.url + path,
        params=signed_params("POST", path, body),
        data=body,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        await response.read()
        return response


async def publish(
    http: aiohttp.ClientSession, server: ServerProcess, channel: str, data: str, timeout: float = 10.0
) -> aiohttp.ClientResponse:
    """One event (``ev``) on ``channel``."""
    event = {"name": "ev", "channel": channel, "data": data}
    return await post_signed(http, server, f"/apps/{APP_ID}/events", event, timeout)


async def publish_batch(
    http: aiohttp.ClientSession, server: ServerProcess, channel: str, data: str, count: int = 10
) -> None:
    """``count`` events (``bulk``, at most the default batch limit of 10) in one batch request; must succeed."""
    batch = {"batch": [{"name": "bulk", "channel": channel, "data": data}] * count}
    # A slow consumer's server may take a while to answer: it is writing megabytes to the other sockets.
    response = await post_signed(http, server, f"/apps/{APP_ID}/batch_events", batch, timeout=60.0)
    assert response.status == 200, await response.text()


async def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def log_lines(server: ServerProcess, needle: str) -> list[str]:
    return [line for line in server.output().splitlines() if needle in line]


def dotenv(text: str) -> dict[str, str]:
    """A .env file as Laravel (vlucas/phpdotenv) reads it: KEY=value, a double-quoted value taken whole, an
    unquoted one up to a `` #`` comment; ${VAR} expanded in both."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        value = value[1 : value.index('"', 1)] if value.startswith('"') else re.sub(r"(^|\s)#.*", "", value).strip()
        values[key.strip()] = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
    return values
