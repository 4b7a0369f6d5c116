"""The cost report (``python -m cost``): its JSON shape, lines that add up, and the figures docs/cost.md quotes."""

from __future__ import annotations

import json

import pytest

from cost import model
from cost.__main__ import main, pusher_plan


def report(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main([*args, "--json"]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_the_json_report_has_every_line_and_they_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    result = report(capsys, "--connections", "1000", "--deliveries-per-day", "1000000")
    lines = result["lines"]
    assert isinstance(lines, list)
    assert {"item", "units", "usd"} <= set(lines[0])
    assert result["total_usd_per_month"] == pytest.approx(sum(line["usd"] for line in lines), abs=0.01)
    assert result["pusher"] == {"plan": "Pro", "usd": 99}
    assert isinstance(result["self_hosted_usd"], float)
    items = {line["item"] for line in lines}
    assert {"API Gateway WebSocket messages", "API Gateway connection-minutes", "Lambda INIT (cold starts)"} <= items


def test_pings_match_the_issue_at_120_s_and_nearly_vanish_at_540_s() -> None:
    """1,000 messages a connection a day spread over the day: ~660 ping+pong messages at 120 s (issue #15)."""
    assert 2 * model.pings_per_day(1000, 86400, 120) == pytest.approx(664, abs=5)
    assert 2 * model.pings_per_day(1000, 86400, 540) < 5
    assert model.pings_per_day(0, 86400, 540) == 160  # an idle connection


def test_the_scenarios_docs_cost_md_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    hobby = report(capsys, "--connections", "100", "--deliveries-per-day", "10000", "--lean")
    medium = report(capsys, "--connections", "1000", "--deliveries-per-day", "1000000", "--lean")
    large = report(capsys, "--connections", "10000", "--deliveries-per-day", "10000000", "--lean")
    idle = report(capsys, "--connections", "0", "--deliveries-per-day", "0", "--lean")
    default_idle = report(capsys, "--connections", "0", "--deliveries-per-day", "0")
    assert hobby["total_usd_per_month"] == 3.67
    assert medium["total_usd_per_month"] == 55.66
    assert large["total_usd_per_month"] == 550.37  # above Pusher Premium: the report says so
    assert idle["total_usd_per_month"] == 0.67
    assert default_idle["total_usd_per_month"] == 9.60  # alarms, dashboard, metrics and a secret


def test_the_pusher_plan_is_the_smallest_that_holds_connections_and_messages() -> None:
    assert pusher_plan(100, 200_000) == ("Sandbox", 0)
    assert pusher_plan(101, 1000) == ("Startup", 49)
    assert pusher_plan(1000, 5_000_000) == ("Business", 299)
    assert pusher_plan(20_000, 1)[1] is None


def test_the_model_prices_each_function_at_the_memory_the_stack_gives_it() -> None:
    from cdk.stack import FUNCTIONS

    assert {name: spec.memory_mb for name, spec in FUNCTIONS.items()} == model.MEMORY_MB
