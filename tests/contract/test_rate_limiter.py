"""The ``RateLimiter`` contract (shared/limits/base.py): fixed windows, refused hits not counted."""

from __future__ import annotations

import asyncio

from shared.limits.base import RateLimiter


async def test_allows_up_to_the_limit_then_refuses(rate_limiter: RateLimiter) -> None:
    results = [await rate_limiter.hit("client_events:app:1.1", 3, 10.0) for _ in range(5)]
    assert results == [True, True, True, False, False]


async def test_keys_are_counted_separately(rate_limiter: RateLimiter) -> None:
    assert await rate_limiter.hit("a", 1, 10.0)
    assert not await rate_limiter.hit("a", 1, 10.0)
    assert await rate_limiter.hit("b", 1, 10.0)


async def test_a_new_window_starts_after_the_window_ends(rate_limiter: RateLimiter) -> None:
    assert await rate_limiter.hit("k", 2, 0.5)
    assert await rate_limiter.hit("k", 2, 0.5)
    assert not await rate_limiter.hit("k", 2, 0.5)
    await asyncio.sleep(0.7)
    assert await rate_limiter.hit("k", 2, 0.5)
    assert await rate_limiter.hit("k", 2, 0.5)
    assert not await rate_limiter.hit("k", 2, 0.5)


async def test_refused_hits_do_not_extend_the_window(rate_limiter: RateLimiter) -> None:
    """A client that keeps sending while limited must get through once the window it opened is over."""
    assert await rate_limiter.hit("k", 1, 0.5)
    for _ in range(5):
        assert not await rate_limiter.hit("k", 1, 0.5)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    assert await rate_limiter.hit("k", 1, 0.5)


async def test_limit_holds_under_concurrent_hits(rate_limiter: RateLimiter) -> None:
    results = await asyncio.gather(*(rate_limiter.hit("burst", 10, 10.0) for _ in range(40)))
    assert sum(results) == 10


async def test_check_health(rate_limiter: RateLimiter) -> None:
    assert await rate_limiter.check_health() is True


async def test_a_zero_second_window_probes_without_opening_one(rate_limiter: RateLimiter) -> None:
    """``hit(key, 1, 0)`` is False iff a window is open, and leaves nothing behind: a window opened right
    after a probe is a full one (the webhook debounce probes pending departures this way)."""
    assert await rate_limiter.hit("marker", 1, 0)
    assert await rate_limiter.hit("marker", 1, 0)  # the first probe opened nothing
    assert await rate_limiter.hit("marker", 1, 10.0)
    await asyncio.sleep(0.05)
    assert not await rate_limiter.hit("marker", 1, 0)
    assert not await rate_limiter.hit("marker", 1, 10.0)
