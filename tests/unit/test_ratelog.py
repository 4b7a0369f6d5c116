"""RateLimitedLog: one line per kind per interval, the held-back count on the next line, kinds kept apart."""

from __future__ import annotations

import logging

import pytest

from shared.ratelog import RateLimitedLog, clean


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_kind_per_interval_then_the_count_of_what_was_held(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.ratelog"), interval=10, clock=clock)
    with caplog.at_level(logging.INFO, "test.ratelog"):
        assert log.info("a", "first %s", "a")
        for _ in range(99):
            assert not log.info("a", "again %s", "a")
        assert log.info("b", "other kind")  # kinds are limited apart
        clock.now += 10
        assert log.info("a", "later %s", "a")
    assert [r.getMessage() for r in caplog.records] == [
        "first a",
        "other kind",
        "later a (+99 similar in the last 10 s)",
    ]
    assert log.held_total == 99


def test_nothing_is_counted_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelog.off"), clock=Clock())
    with caplog.at_level(logging.WARNING, "test.ratelog.off"):
        assert not log.info("a", "quiet")
    assert log.held_total == 0 and not caplog.records


def test_a_traceback_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelog.exc"), clock=Clock())
    with caplog.at_level(logging.INFO, "test.ratelog.exc"):
        log.warning("expected", "backend down")
        try:
            raise ValueError("bug")
        except ValueError as exc:
            log.error("bug", "handler failed", exc_info=exc)
    assert caplog.records[0].exc_info is None
    assert caplog.records[1].exc_info is not None


def test_clean_masks_what_could_forge_a_line() -> None:
    assert clean('a\nb"c\x1bd') == "a?b?c?d"
    assert clean("x" * 300, 10) == "x" * 10 + "…"
