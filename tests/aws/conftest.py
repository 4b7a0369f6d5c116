"""Fixtures for the AWS drivers: a DynamoDB store on moto with a clock the test moves, and a tiny API
Gateway management API (``@connections``) on aiohttp that answers like the real one, 410 and 429 included,
and checks every request's SigV4 signature with botocore's own signer."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import botocore.auth
import pytest
from aiohttp import web
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from shared.sigv4 import Credentials
from shared.store.dynamodb import DynamoDBChannelStore
from tests.aws import backend

# What the senders under test sign with; the management API below accepts nothing else.
CREDENTIALS = Credentials("AKIDSOCKLESSTEST", "sockless/test+secret", "session-token/+=")


class Clock:
    """Wall-clock time the test moves forward by hand (the store reads it for TTLs, leases and the sweep)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aws() -> Iterator[None]:
    with backend.aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> tuple[backend.AtomicRequests, str]:
    """A raw (request-atomic) moto client and a fresh table."""
    return backend.dynamodb_table()


@pytest.fixture
async def store(dynamodb: tuple[backend.AtomicRequests, str], clock: Clock) -> AsyncIterator[DynamoDBChannelStore]:
    client, table = dynamodb
    driver = DynamoDBChannelStore(table, client=client, clock=clock)
    yield driver
    await driver.close()


@dataclass
class ManagementApi:
    """API Gateway's management API for WebSocket connections, as far as the sender uses it.

    Unknown connections are open. ``gone`` answer 410 ``GoneException``; ``throttle[cid] = n`` answers
    the next n requests for ``cid`` with 429 ``LimitExceededException`` (``throttle_fraction``: that share of
    all requests, at random, as API Gateway's account-wide rate does at scale); ``fail[cid] = status`` answers
    that status every time. ``delay`` holds every answer, to observe concurrency.
    """

    url: str = ""
    credentials: Credentials = CREDENTIALS
    region: str = backend.REGION
    bad_signatures: int = 0
    posts: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    deleted: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    throttle: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0
    throttle_fraction: float = 0.0  # that share of all requests answers 429, at random (seeded)
    rng: random.Random = field(default_factory=lambda: random.Random(17))

    def signed_by_us(self, request: web.Request, body: bytes) -> bool:
        """Recompute the signature with botocore's signer at the request's own X-Amz-Date and compare."""
        amz_date = request.headers.get("X-Amz-Date", "")
        creds = self.credentials
        expected = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=body)
        expected.headers["X-Amz-Date"] = amz_date
        if creds.token:
            expected.headers["X-Amz-Security-Token"] = creds.token
        expected.context["timestamp"] = amz_date
        signer = botocore.auth.SigV4Auth(
            BotoCredentials(creds.access_key, creds.secret_key, creds.token), "execute-api", self.region
        )
        canonical = signer.canonical_request(expected)
        signature = signer.signature(signer.string_to_sign(expected, canonical), expected)
        signed = signer.signed_headers(signer.headers_to_sign(expected))
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(expected)}, SignedHeaders={signed}, Signature={signature}"
        )
        return bool(
            request.headers.get("Authorization") == authorization
            and request.headers.get("X-Amz-Security-Token") == creds.token
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["connection_id"]
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            body = await request.read()
        finally:
            self.in_flight -= 1
        if not self.signed_by_us(request, body):
            self.bad_signatures += 1
            return _error(403, "InvalidSignatureException")
        if cid in self.gone:
            return _error(410, "GoneException")
        if self.throttle.get(cid, 0) > 0:
            self.throttle[cid] -= 1
            return _error(429, "LimitExceededException")
        if self.throttle_fraction and self.rng.random() < self.throttle_fraction:
            return _error(429, "LimitExceededException")
        if cid in self.fail:
            return _error(self.fail[cid], "ForbiddenException" if self.fail[cid] == 403 else "InternalServerError")
        if request.method == "POST":
            self.posts[cid].append(body)
            return web.Response(status=200)
        if request.method == "DELETE":
            self.deleted.append(cid)
            self.gone.add(cid)
            return web.Response(status=204)
        return web.json_response({"connectedAt": "2026-01-01T00:00:00Z", "lastActiveAt": "2026-01-01T00:00:00Z"})


def _error(status: int, error_type: str) -> web.Response:
    # boto3 picks the error code from this header (docs/sources.md#tooling).
    return web.json_response({"message": error_type}, status=status, headers={"x-amzn-ErrorType": error_type})


@pytest.fixture
async def management_api() -> AsyncIterator[ManagementApi]:
    api = ManagementApi()
    app = web.Application()
    app.router.add_route("*", "/prod/@connections/{connection_id}", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api.url = f"http://127.0.0.1:{port}/prod"
    yield api
    await runner.cleanup()
