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
    window = 1.0
    clock = asyncio.get_running_loop().time
    for _ in range(2):
        opened = clock()
        assert await rate_limiter.hit("k", 2, window)
        counted = clock()
        assert await rate_limiter.hit("k", 2, window)
        refused = not await rate_limiter.hit("k", 2, window)
        assert refused or clock() >= opened + window  # only a slow machine lets the window end first
        await asyncio.sleep(max(counted + window + 0.05 - clock(), 0))


async def test_refused_hits_do_not_extend_the_window(rate_limiter: RateLimiter) -> None:
    """A client that keeps sending while limited must get through once the window it opened is over.

    Hits are made until just before the window ends; each answered before its end must be refused. Then,
    one window after the first hit, a hit must pass: had the refusals extended the window, the last of them
    (a tenth of a window earlier) would still hold it closed. Only the clock orders this, so a slow machine
    makes fewer refused hits, never a wrong answer."""
    window = 1.0
    clock = asyncio.get_running_loop().time
    opened = clock()
    assert await rate_limiter.hit("k", 1, window)
    counted = clock()
    refused = 0
    while clock() < opened + 0.9 * window:
        allowed = await rate_limiter.hit("k", 1, window)
        if clock() < opened + window:  # answered before the window can have ended
            assert not allowed
            refused += 1
        await asyncio.sleep(0.05)
    assert refused > 0
    await asyncio.sleep(max(counted + window + 0.05 - clock(), 0))
    assert await rate_limiter.hit("k", 1, window)


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
