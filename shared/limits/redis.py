"""``RedisRateLimiter``: fixed windows counted in Redis, so every node and Lambda shares the same limit.

While Redis is unreachable the limiter counts in process instead (each node then enforces the limit on
its own), logs it and reports unhealthy: a rate limiter that refused everything, or raised into the
WebSocket loop, would take client traffic down with the backend.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.limits.memory import MemoryRateLimiter
from shared.redis.errors import CountsErrors, raise_if_cancelling
from shared.redis.keys import RedisKeys

log = logging.getLogger("sockless.redis")

# Refused hits are not counted: the DECR undoes the INCR, and the window is set by the first hit only.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""

_LOG_EVERY_SECONDS = 10.0


class RedisRateLimiter(CountsErrors):
    def __init__(self, client: Redis, *, prefix: str = "sockless", owns_client: bool = False) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._owns_client = owns_client
        self._hit = client.register_script(_HIT)
        self._fallback = MemoryRateLimiter()
        self._last_log = 0.0

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        window_ms = max(int(window_seconds * 1000), 0)  # PEXPIRE 0 deletes the key: a 0 s window is a probe
        try:
            allowed = bool(await self._hit(keys=[self.keys.rate_limit(key)], args=[limit, window_ms]))
            raise_if_cancelling()
            return allowed
        except (RedisError, OSError) as exc:
            raise_if_cancelling(exc)
            self.errors += 1
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY_SECONDS:
                self._last_log = now
                log.error("rate limiter: redis unavailable, counting in process (%d failures): %s", self.errors, exc)
            return await self._fallback.hit(key, limit, window_seconds)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def check_health(self) -> bool:
        return await self.ping(self.client)
