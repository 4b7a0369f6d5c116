"""Redis errors become the project's ``StoreUnavailable``, counted; cancellations are never lost.

Why drivers translate their errors: docs/contributing.md#conventions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import StoreUnavailable
from shared.ratelog import RateLimitedLog

log = logging.getLogger("sockless.redis")
health_log = RateLimitedLog(log)

HEALTH_TIMEOUT_SECONDS = 1.0


def raise_if_cancelling(cause: BaseException | None = None) -> None:
    """Restore a cancellation a lower layer lost.

    On Python 3.11, redis-py's blocking pool waits on an ``asyncio.Condition`` that can swallow a
    cancellation arriving together with a notify, and redis-py can also surface one as a connection or
    timeout error. A loop that carried on would then never stop (and hang shutdown), so every Redis call
    here ends with this check: a task that was asked to stop stops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause


class CountsErrors:
    """Translates client errors into the project's ``StoreUnavailable`` (docs/contributing.md#conventions),
    counting them (the local server exports the count as ``sockless_redis_errors_total``)."""

    errors: int = 0

    @contextlib.contextmanager
    def unavailable(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise_if_cancelling(exc)
            self.errors += 1
            raise StoreUnavailable(f"redis {what} failed: {exc}") from exc
        raise_if_cancelling()

    async def ping(self, client: Redis) -> bool:
        """The drivers' ``check_health``: a PING answered within ``HEALTH_TIMEOUT_SECONDS``."""
        try:
            answered = bool(await asyncio.wait_for(client.ping(), HEALTH_TIMEOUT_SECONDS))
        except (RedisError, OSError) as exc:
            raise_if_cancelling(exc)
            self.errors += 1
            # Load balancers call /up every few seconds: one line per interval, however often it is asked.
            health_log.warning("redis:health", "redis health check failed: %s", exc or type(exc).__name__)
            return False
        raise_if_cancelling()
        return answered
