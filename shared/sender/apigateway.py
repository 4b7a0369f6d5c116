"""``ApiGatewaySender``: frames to API Gateway WebSocket connections through the management API.

Each frame is one ``PostToConnection``: a SigV4-signed request on a pool of keep-alive connections
(shared/sender/management.py, shared/http1.py), not a boto3 call: boto3 spends ~1.1 ms of CPU per post,
which capped one invocation near 900 posts/s (bench/RESULTS.md "Lean sender"). A broadcast is one batch for
the pool's thread, up to ``concurrency`` requests in flight. Outcomes
(docs/sources.md#api-gateway-websocket, docs/aws.md#fan-out):

- 410 ``GoneException``: the connection is gone; reported in ``Delivery.gone`` so the engine removes it
  with the same effects and webhooks as a ``$disconnect`` (no ghost presence members).
- 429 ``LimitExceededException`` (the account-wide rate), other throttling, 5xx, network errors and
  timeouts: retried with full-jitter exponential backoff, then counted in ``Delivery.failed`` and logged
  (one line per broadcast, with the causes), never dropped silently.
- Any other error (403, 413 payload too large): counted in ``Delivery.failed`` at once and logged.

Sockets map to connectionIds through a :class:`ConnectionResolver` (the DynamoDB store), in bulk. A
broadcast larger than ``chunk_size`` with an ``offload`` callable posts the first chunk itself and hands
each other chunk to ``offload`` (the Lambda layer invokes a fan-out function asynchronously, or queues
it), so delivery time stays flat as a channel grows (docs/dynamodb.md "Fan-out").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.aws_io import THROTTLING_CODES
from shared.errors import StoreUnavailable
from shared.http1 import Response
from shared.sender.base import Delivery
from shared.sender.management import Answer, CredentialSource, ManagementApi, botocore_credentials
from shared.sigv4 import payload_hash
from shared.types import AppId, SocketId

log = logging.getLogger("sockless.sender")


class ConnectionResolver(Protocol):
    async def connection_ids(self, app_id: AppId, socket_ids: Collection[SocketId]) -> Mapping[SocketId, str]:
        """connectionIds of the sockets that still have one; absent sockets are gone."""


@dataclass(frozen=True, slots=True)
class FanoutChunk:
    """A slice of one broadcast handed to another invocation; ``connection_ids`` align with ``socket_ids``."""

    app_id: AppId
    frame: bytes
    socket_ids: tuple[SocketId, ...]
    connection_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; the frame travels as text (frames are UTF-8 JSON) or base64 with ``frame_b64``."""
        data: dict[str, Any] = {"app_id": self.app_id, "socket_ids": list(self.socket_ids)}
        try:
            data["frame"] = self.frame.decode()
        except UnicodeDecodeError:
            data["frame"], data["frame_b64"] = base64.b64encode(self.frame).decode(), True
        if self.connection_ids:
            data["connection_ids"] = list(self.connection_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FanoutChunk:
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed chunk."""
        raw = str(data["frame"])
        try:
            frame = base64.b64decode(raw, validate=True) if data.get("frame_b64") else raw.encode()
        except binascii.Error as exc:
            raise ValueError(f"bad base64 frame: {exc}") from exc
        sockets = tuple(SocketId(str(s)) for s in data["socket_ids"])
        connection_ids = tuple(str(c) for c in data.get("connection_ids") or ())
        if connection_ids and len(connection_ids) != len(sockets):
            raise ValueError("connection_ids must align with socket_ids")
        return cls(app_id=AppId(str(data["app_id"])), frame=frame, socket_ids=sockets, connection_ids=connection_ids)


Offload = Callable[[FanoutChunk], Awaitable[None]]


class Outcome(enum.Enum):
    SENT = "sent"
    GONE = "gone"
    FAILED = "failed"


def classify(answer: Answer) -> Outcome | None:
    """The outcome of one answer; ``None`` when it is worth retrying (throttling, 5xx)."""
    if answer.status < 300:
        return Outcome.SENT
    if answer.status == 410 or answer.error == "GoneException":
        return Outcome.GONE
    if answer.status == 429 or answer.error in THROTTLING_CODES or answer.status >= 500:
        return None
    return Outcome.FAILED


class ApiGatewaySender:
    def __init__(
        self,
        resolver: ConnectionResolver,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credentials: CredentialSource | None = None,
        api: ManagementApi | None = None,
        concurrency: int = 64,
        timeout: float = 5.0,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        chunk_size: int = 1000,
        offload: Offload | None = None,
    ) -> None:
        """``api`` or ``endpoint_url`` (then ``credentials`` default to botocore's provider chain, read once,
        and ``region`` to the one in the execute-api host name)."""
        if api is None:
            if endpoint_url is None:
                raise ValueError("ApiGatewaySender needs the management API's endpoint_url")
            source = credentials if credentials is not None else botocore_credentials()
            api = ManagementApi(endpoint_url, source, region=region, pool_size=concurrency, timeout=timeout)
        self.api = api
        self._resolver = resolver
        self.concurrency = max(concurrency, 1)
        self.max_attempts = max(max_attempts, 1)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.chunk_size = max(chunk_size, 1)
        self.offload = offload
        self.throttled = 0  # throttling answers seen (each one retried or counted as failed)

    # -- calls, with retries ---------------------------------------------------------------------------------

    async def _calls(self, method: str, connection_ids: Sequence[str], body: bytes = b"") -> list[tuple[Outcome, str]]:
        """One call per connectionId, all in one batch of the pool (up to ``concurrency`` in flight); each
        one's outcome and what went wrong. Throttling, 5xx and network errors are retried after a full-jitter
        exponential backoff (the retry waits in the pool, its connection serves other calls meanwhile)."""
        count = len(connection_ids)
        results: list[tuple[Outcome, str]] = [(Outcome.FAILED, "not sent")] * count
        attempts = [0] * count
        body_hash, credentials = payload_hash(body), self.api.credentials()

        def build(index: int) -> bytes:
            return self.api.request(method, connection_ids[index], body, body_hash, credentials)

        def settle(index: int, result: Response | Exception) -> float | None:
            attempts[index] = attempt = attempts[index] + 1
            if isinstance(result, Exception):  # refused, reset, timed out: transient
                outcome, problem = None, type(result).__name__
            else:
                answer = self.api.answer(result)
                outcome, problem = classify(answer), answer.error or str(answer.status)
                if outcome is None and (answer.status == 429 or answer.error in THROTTLING_CODES):
                    self.throttled += 1
            if outcome is None:
                if attempt < self.max_attempts:
                    return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                outcome, problem = Outcome.FAILED, f"{problem} (after {attempt} attempts)"
            results[index] = (outcome, "" if outcome is Outcome.SENT else problem)
            return None

        if count:
            await self.api.pool.run(count, build, settle)
        return results

    async def _call(self, method: str, connection_id: str, body: bytes = b"") -> tuple[Outcome, str]:
        return (await self._calls(method, (connection_id,), body))[0]

    async def post(self, connection_id: str, frame: bytes) -> Outcome:
        outcome, problem = await self._call("POST", connection_id, frame)
        if outcome is Outcome.FAILED:
            log.warning("PostToConnection %s failed: %s", connection_id, problem)
        return outcome

    # -- Sender -----------------------------------------------------------------------------------------------

    async def send(self, app_id: AppId, socket_id: SocketId, frame: bytes) -> bool:
        """``False`` when the socket is gone; raises ``StoreUnavailable`` when the frame could not be posted."""
        connection_id = (await self._resolver.connection_ids(app_id, (socket_id,))).get(socket_id)
        if connection_id is None:
            return False
        outcome, problem = await self._call("POST", connection_id, frame)
        if outcome is Outcome.FAILED:
            raise StoreUnavailable(f"PostToConnection to socket {socket_id} failed: {problem}")
        return outcome is Outcome.SENT

    async def broadcast(
        self, app_id: AppId, socket_ids: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        targets = [s for s in dict.fromkeys(socket_ids) if s != except_socket]
        if not targets:
            return Delivery(sent=0)
        resolved = await self._resolver.connection_ids(app_id, targets)
        recipients = [(s, resolved[s]) for s in targets if s in resolved]
        unknown = tuple(s for s in targets if s not in resolved)
        if self.offload is not None and len(recipients) > self.chunk_size:
            mine, rest = recipients[: self.chunk_size], recipients[self.chunk_size :]
            chunks = [rest[i : i + self.chunk_size] for i in range(0, len(rest), self.chunk_size)]
            own, handed = await asyncio.gather(
                self._deliver(mine, frame), asyncio.gather(*(self._offload(app_id, frame, c) for c in chunks))
            )
            return Delivery(sent=own.sent, gone=unknown + own.gone, failed=own.failed + sum(handed))
        delivery = await self._deliver(recipients, frame)
        return Delivery(sent=delivery.sent, gone=unknown + delivery.gone, failed=delivery.failed)

    async def _offload(self, app_id: AppId, frame: bytes, recipients: Sequence[tuple[SocketId, str]]) -> int:
        """Hand a chunk on; the number of recipients that could not be handed on (counted as failed)."""
        assert self.offload is not None
        chunk = FanoutChunk(
            app_id=app_id,
            frame=frame,
            socket_ids=tuple(s for s, _ in recipients),
            connection_ids=tuple(c for _, c in recipients),
        )
        try:
            await self.offload(chunk)
        except Exception:
            log.exception("fan-out offload of %d recipients failed", len(recipients))
            return len(recipients)
        return 0

    async def deliver(self, chunk: FanoutChunk) -> Delivery:
        """Post a chunk another invocation handed on (the fan-out worker); never splits it again."""
        if chunk.connection_ids:
            recipients = list(zip(chunk.socket_ids, chunk.connection_ids, strict=True))
            return await self._deliver(recipients, chunk.frame)
        resolved = await self._resolver.connection_ids(chunk.app_id, chunk.socket_ids)
        unknown = tuple(s for s in chunk.socket_ids if s not in resolved)
        delivery = await self._deliver([(s, resolved[s]) for s in chunk.socket_ids if s in resolved], chunk.frame)
        return Delivery(sent=delivery.sent, gone=unknown + delivery.gone, failed=delivery.failed)

    async def _deliver(self, recipients: Sequence[tuple[SocketId, str]], frame: bytes) -> Delivery:
        """Post ``frame`` to every recipient in one batch; failures are logged once, with their causes."""
        if not recipients:
            return Delivery(sent=0)
        results = await self._calls("POST", [cid for _, cid in recipients], frame)
        gone = tuple(s for (s, _), (o, _) in zip(recipients, results, strict=True) if o is Outcome.GONE)
        problems = collections.Counter(p for o, p in results if o is Outcome.FAILED)
        failed = sum(problems.values())
        if failed:
            log.warning(
                "PostToConnection failed for %d of %d recipients: %s",
                failed,
                len(recipients),
                ", ".join(f"{problem} x{n}" for problem, n in problems.most_common()),
            )
        return Delivery(sent=len(recipients) - len(gone) - failed, gone=gone, failed=failed)

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        """``DeleteConnection``: API Gateway always closes with 1000 (docs/sources.md#behaviour), so the Pusher code
        reaches the client only as the ``pusher:error`` frame the engine sent before. Gone already: done."""
        connection_id = (await self._resolver.connection_ids(app_id, (socket_id,))).get(socket_id)
        if connection_id is None:
            return
        outcome, problem = await self._call("DELETE", connection_id)
        if outcome is Outcome.FAILED:
            raise StoreUnavailable(f"DeleteConnection of socket {socket_id} failed: {problem}")

    async def close(self) -> None:
        await self.api.close()

    async def check_health(self) -> bool:
        """Always ``True``: the management API has no free health call (a probe would be a billed request);
        failures surface in ``Delivery.failed`` and ``StoreUnavailable`` instead."""
        return True
