"""The cost report (``python -m cost``): its JSON shape, lines that add up, and the figures docs/cost.md quotes."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

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
    # The lean stack orders frames through the DynamoDB stream (no idle polls): under the $3 target.
    assert hobby["total_usd_per_month"] == 2.97
    assert hobby["stack"]["frames_transport"] == "stream"  # type: ignore[index]
    fifo = report(capsys, "--connections", "100", "--deliveries-per-day", "10000", "--lean", "--frames", "fifo")
    assert fifo["total_usd_per_month"] == 3.32  # the FIFO queue's idle polls ($0.32) stand over it
    assert medium["total_usd_per_month"] == 54.03
    assert large["total_usd_per_month"] == 539.33  # above Pusher Premium: the report says so
    assert idle["total_usd_per_month"] == 0.09
    assert default_idle["total_usd_per_month"] == 9.34  # alarms, dashboard, metrics and a secret


def _usd(lines: list[model.Line], item: str) -> float:
    return sum(line.usd() for line in lines if line.item == item)


def test_the_webhook_queue_is_polled_only_when_an_app_has_webhooks() -> None:
    """The stack enables the worker's event source mapping only for an apps file with webhooks (the example's
    has none); an enabled mapping long-polls all month: 5 receives every 20 s, $0.26 at the standard price."""
    from cdk.components.webhooks import polled
    from cdk.config import DEFAULT_APPS_FILE, load_apps

    assert polled(load_apps(DEFAULT_APPS_FILE)) is model.Stack().webhooks is False
    idle = model.Workload(connections=0, deliveries_per_day=0)
    webhooks = "SQS requests (webhook queue)"
    assert _usd(model.month(idle, model.LEAN), webhooks) == 0
    polled_month = model.month(idle, replace(model.LEAN, webhooks=True))
    assert _usd(polled_month, webhooks) == pytest.approx(5 * 86400 / 20 * 30 * 0.4e-6)
    # A workload with webhooks implies an app that has them.
    busy = model.month(replace(idle, webhooks_per_day=100), model.LEAN)
    assert _usd(busy, webhooks) == pytest.approx(_usd(polled_month, webhooks) + 3 * 100 * 30 * 0.4e-6)


def test_the_frames_queue_is_polled_only_with_ordered_frames() -> None:
    idle = model.Workload(connections=0, deliveries_per_day=0)
    frames = "SQS FIFO requests (ordered frames)"
    fifo = replace(model.LEAN, frames_transport="fifo")
    assert _usd(model.month(idle, fifo), frames) == pytest.approx(5 * 86400 / 20 * 30 * 0.5e-6)
    assert _usd(model.month(idle, replace(fifo, ordered_frames=False)), frames) == 0


def test_the_frames_stream_bills_a_write_unit_per_frame_and_nothing_idle() -> None:
    """-c ordered_frames=stream: no polls to pay (Lambda's GetRecords on a stream are free), one PutItem a frame
    in 1 KB write units of the item (the frame base64-encoded plus its attributes)."""
    idle = model.Workload(connections=0, deliveries_per_day=0)
    stream = replace(model.LEAN, frames_transport="stream")
    assert _usd(model.month(idle, stream), "SQS FIFO requests (ordered frames)") == 0
    assert _usd(model.month(idle, stream), "DynamoDB writes (ordered frames stream)") == 0
    busy = replace(idle, client_events_per_day=1e6 / 30)
    assert _usd(model.month(busy, stream), "DynamoDB writes (ordered frames stream)") == pytest.approx(0.625)
    assert model.stream_frame_wru(300) == 1
    assert model.stream_frame_wru(700) == 2  # 100 + 936 bytes


def test_access_logs_are_a_line_of_their_own_choice() -> None:
    """-c access_logs=false (the lean stack): no access-log bytes; the functions' own logs are unaffected."""
    workload = model.Workload(connections=1000, deliveries_per_day=1_000_000)
    logs = "CloudWatch Logs ingestion"
    assert _usd(model.month(workload, model.LEAN), logs) == 0
    assert _usd(model.month(workload, replace(model.LEAN, access_logs=True)), logs) == pytest.approx(0.72, abs=0.01)


def test_the_pusher_plan_is_the_smallest_that_holds_connections_and_messages() -> None:
    assert pusher_plan(100, 200_000) == ("Sandbox", 0)
    assert pusher_plan(101, 1000) == ("Startup", 49)
    assert pusher_plan(1000, 5_000_000) == ("Business", 299)
    assert pusher_plan(20_000, 1)[1] is None


def test_the_model_prices_each_function_at_the_memory_the_stack_gives_it() -> None:
    from cdk.stack import FUNCTIONS

    assert {name: spec.memory_mb for name, spec in FUNCTIONS.items()} == model.MEMORY_MB


def test_docs_cost_md_shows_what_the_report_prints_today(capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``$ python -m cost ...`` block of docs/cost.md is followed by that command's current output."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cost.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n\$ python -m cost ([^\n]*)\n(.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) >= 4
    for args, shown in blocks:
        assert main(args.split()) == 0
        assert capsys.readouterr().out == shown, args


def test_the_report_prices_ordered_frames_per_million_client_frames(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue #20: what keeping a connection's frames in order adds per million client frames, as docs/aws.md
    and docs/cost.md quote it, and the monthly model charging exactly that per client event."""
    order = report(capsys)["ordered_frames"]
    assert isinstance(order, dict)
    assert order["added_usd_per_million_client_frames"] == {
        "alone": 1.5,
        "full_batches": 0.42,
        "stream_alone": 0.62,
        "stream_full_batches": 0.44,
    }
    events = order["client_event_usd_per_million"]
    assert events["ordered"] - events["unordered"] == pytest.approx(1.5, abs=0.011)
    assert order["added_latency_ms_on_aws"] == {"p50": 28, "p99": 645}
    # The same per-million figures whichever way the priced stack is deployed.
    lean = report(capsys, "--lean", "--unordered-frames")["ordered_frames"]
    assert isinstance(lean, dict)
    assert lean["added_usd_per_million_client_frames"] == order["added_usd_per_million_client_frames"]
    added = model.ordered_frames()
    docs = Path(__file__).resolve().parents[2] / "docs"
    aws = (docs / "aws.md").read_text()
    assert f"+${added.fifo_full:.2f} to +${added.fifo_alone:.2f}" in aws
    assert f"-${-added.lambda_full:.2f} to $0" in aws
    cost = (docs / "cost.md").read_text()
    assert f"| total | +${added.alone:.2f} | +${added.full:.2f} |" in cost
    assert f"${events['unordered']:.2f} without ordered frames, ${events['ordered']:.2f} with" in cost
    assert "+28 ms at p50 and +645 ms at p99" in cost


def test_the_text_report_names_the_ordered_frames_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "+$1.50 per million client frames" in out
    assert "(+$0.42 with full batches of 10)" in out
