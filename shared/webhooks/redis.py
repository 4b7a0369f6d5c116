"""``RedisWebhookQueue``: webhook jobs in Redis, so they survive a node restart and any node may deliver them.

Same semantics as SQS (shared/webhooks/base.py): a job received is hidden for the visibility timeout and
comes back unless acked, so a node killed mid-delivery loses nothing. Layout, all under one hash tag so
the scripts may touch every key on Redis Cluster:

- ``jobs``  hash   entry id -> job JSON (an entry per push: a retry is a new entry, even with the same job id)
- ``due``   zset   entry id -> ms (server clock) when the entry becomes visible: its delay, or the end of
  its visibility timeout while in flight
- ``rc``    hash   entry id -> token of the current delivery; ``ack`` deletes only with the current token,
  so a worker that outlived the timeout cannot ack the redelivered copy away
- ``bell``  list   a doorbell: a push of a ready job wakes a ``receive`` blocked on it (BLPOP)

Times come from the Redis server (``TIME``), so the nodes' clocks need not agree.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis

from shared.redis.errors import CountsErrors
from shared.redis.keys import RedisKeys
from shared.webhooks.base import MAX_DELAY_SECONDS, WebhookJob

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local Q = KEYS[1]
"""

# ARGV: entry id, job JSON, delay ms
_PUSH = (
    _NOW
    + """
redis.call('HSET', Q .. 'jobs', ARGV[1], ARGV[2])
redis.call('ZADD', Q .. 'due', now + tonumber(ARGV[3]), ARGV[1])
if tonumber(ARGV[3]) == 0 then
  redis.call('LPUSH', Q .. 'bell', 1)
  redis.call('LTRIM', Q .. 'bell', 0, 0)
end
return 1
"""
)

# ARGV: max items, visibility ms -> {ms until the next entry is due (-1: none), entry, token, job, ...}
_RECEIVE = (
    _NOW
    + """
local out = {-1}
local entries = redis.call('ZRANGEBYSCORE', Q .. 'due', '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, entry in ipairs(entries) do
  local job = redis.call('HGET', Q .. 'jobs', entry)
  if job then
    local token = tostring(redis.call('INCR', Q .. 'seq'))
    redis.call('ZADD', Q .. 'due', now + tonumber(ARGV[2]), entry)
    redis.call('HSET', Q .. 'rc', entry, token)
    out[#out + 1] = entry
    out[#out + 1] = token
    out[#out + 1] = job
  else
    redis.call('ZREM', Q .. 'due', entry)
    redis.call('HDEL', Q .. 'rc', entry)
  end
end
if #out == 1 then
  local first = redis.call('ZRANGE', Q .. 'due', 0, 0, 'WITHSCORES')
  if first[2] then out[1] = math.max(tonumber(first[2]) - now, 0) end
end
return out
"""
)

# ARGV: entry, token, entry, token, ...
_ACK = """
local Q = KEYS[1]
for i = 1, #ARGV, 2 do
  if redis.call('HGET', Q .. 'rc', ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', Q .. 'jobs', ARGV[i])
    redis.call('ZREM', Q .. 'due', ARGV[i])
    redis.call('HDEL', Q .. 'rc', ARGV[i])
  end
end
return 1
"""

# A blocked receive wakes at least this often to re-check delayed and timed-out entries; below the
# client's socket timeout, so a BLPOP is never mistaken for a dead connection.
_MAX_BLOCK_SECONDS = 1.0


class RedisWebhookQueue(CountsErrors):
    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "sockless",
        visibility_timeout: float = 120.0,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.visibility_timeout = visibility_timeout
        self._q = RedisKeys(prefix).webhook_queue
        self._owns_client = owns_client
        self._push = client.register_script(_PUSH)
        self._receive = client.register_script(_RECEIVE)
        self._ack = client.register_script(_ACK)

    async def push(self, job: WebhookJob, delay_seconds: float = 0.0) -> None:
        delay_ms = int(min(max(delay_seconds, 0.0), MAX_DELAY_SECONDS) * 1000)
        payload = json.dumps(job.to_dict(), separators=(",", ":"))
        with self.unavailable("webhook push"):
            await self._push(keys=[self._q], args=[uuid.uuid4().hex, payload, delay_ms])

    async def receive(self, max_items: int, wait_seconds: float) -> list[WebhookJob]:
        if max_items <= 0:
            return []
        deadline = time.monotonic() + wait_seconds
        visibility_ms = int(self.visibility_timeout * 1000)
        while True:
            with self.unavailable("webhook receive"):
                result = await self._receive(keys=[self._q], args=[max_items, visibility_ms])
            next_due_ms = int(result[0])
            jobs = [
                WebhookJob.from_dict(json.loads(result[i + 2]), receipt=f"{_s(result[i])}:{_s(result[i + 1])}")
                for i in range(1, len(result), 3)
            ]
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0:
                return jobs
            block = min(remaining, _MAX_BLOCK_SECONDS)
            if next_due_ms >= 0:
                block = min(block, next_due_ms / 1000)
            with self.unavailable("webhook receive"):
                # BLPOP's timeout 0 means forever: never pass it.
                await self.client.blpop([self._q + "bell"], timeout=max(block, 0.01))

    async def ack(self, jobs: Sequence[WebhookJob]) -> None:
        args: list[str] = []
        for job in jobs:
            if job.receipt is not None and ":" in job.receipt:
                entry, _, token = job.receipt.partition(":")
                args += [entry, token]
        if args:
            with self.unavailable("webhook ack"):
                await self._ack(keys=[self._q], args=args)

    async def pending(self) -> int:
        with self.unavailable("webhook pending"):
            return int(await self.client.hlen(self._q + "jobs"))

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def check_health(self) -> bool:
        return await self.ping(self.client)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
