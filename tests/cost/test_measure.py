"""``python -m cost --measure``: a sample run through the emulator (the synthesized stack, the real handlers)
gives the month the recorded profile of cost/model.py gives, within the tolerances docs/cost.md states."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cost.measure import cdk_context, function_kind, measure
from cost.model import LEAN, PROFILE, Line, Op, Stack, Workload, month

# Units are counted, so they agree closely (a sample of 4 spreads a channel's first subscriber and last
# leaver over 4 operations, the model over 10); durations are the emulator's, on a shared machine.
UNITS_TOLERANCE = 0.06
TOTAL_TOLERANCE = 0.15
UNIT_LINES = (
    "API Gateway WebSocket messages",
    "API Gateway HTTP API requests",
    "Lambda requests",
    "DynamoDB writes",
    "DynamoDB reads",
    "SQS FIFO requests (ordered frames)",
)


@pytest.fixture(scope="module")
def measured() -> dict[str, Op]:
    from local_server.emulator import synth

    synth.template()  # the default stack's template, cached: the emulator starts without a synth
    return measure(Stack(), size=4)


def test_the_measured_month_agrees_with_the_model(measured: dict[str, Op]) -> None:
    workload = Workload(connections=1000, deliveries_per_day=1_000_000)
    by_measure = {line.item: line for line in month(workload, Stack(), measured)}
    by_model = {line.item: line for line in month(workload, Stack())}
    for item in UNIT_LINES:
        assert by_measure[item].units == pytest.approx(by_model[item].units, rel=UNITS_TOLERANCE), item
    total_measured = sum(line.usd() for line in by_measure.values())
    total_model = sum(line.usd() for line in by_model.values())
    assert total_measured == pytest.approx(total_model, rel=TOTAL_TOLERANCE)


def test_the_sample_counts_every_seam_of_the_emulator(measured: dict[str, Op]) -> None:
    """Invocations with their function, DynamoDB units by item size, SQS FIFO requests of the ordered frames
    queue, messages of the MOCK ping route, access-log lines and what the functions print (INFO logs and
    EMF documents in the default stack)."""
    connect, subscribe, ping, disconnect = (measured[k] for k in ("connect", "subscribe", "ping", "disconnect"))
    assert set(connect.lambdas) == {"connect", "welcome"}
    assert connect.wru == PROFILE["connect"].wru
    assert subscribe.sqs_fifo == 3  # send, the receive that returned it, delete
    assert (ping.ws, ping.lambdas, ping.logged) == (2, {}, 1)
    assert set(disconnect.lambdas) == {"disconnect"}
    assert all((op.log_bytes or 0) > 0 for name, op in measured.items() if name != "ping")


def test_a_client_events_units_are_the_models(measured: dict[str, Op]) -> None:
    """The default workload has no client events, so the month above cannot see them: each unit of one,
    as the sample counts it (a burst from one sender), against the model's."""
    event, model = measured["client_event"], PROFILE["client_event"]
    assert (event.ws, event.sqs_fifo, set(event.lambdas)) == (model.ws, model.sqs_fifo, set(model.lambdas))
    assert event.wru == pytest.approx(model.wru, rel=UNITS_TOLERANCE * 2)  # its window opens once a sample
    assert event.rru == pytest.approx(model.rru, rel=UNITS_TOLERANCE * 2)


def test_function_names_map_to_the_stacks_names() -> None:
    assert function_kind("sockless-HttpApiFunction") == "http_api"
    assert function_kind("sockless-ConnectFunctionA335AD3A") == "connect"


@pytest.fixture(scope="module")
def measured_stream() -> dict[str, Op]:
    from local_server.emulator import synth

    stack = replace(LEAN, frames_transport="stream")
    synth.template(cdk_context(stack))  # the stream variant's template, cached (a synth the first time)
    return measure(stack, size=4)


def test_the_frames_stream_variant_measured_agrees_with_the_model(measured_stream: dict[str, Op]) -> None:
    """``--lean`` prices frames through the DynamoDB stream: a frame is one PutItem on the frames table, no
    SQS request. The model adds those writes on their own line; the meter counts them with every table's."""
    stack = replace(LEAN, frames_transport="stream")
    # The existing test's workload: its frames are the subscribes (client events: see the assertions below).
    workload = Workload(connections=1000, deliveries_per_day=1_000_000)
    by_measure = {line.item: line for line in month(workload, stack, measured_stream)}
    by_model = {line.item: line for line in month(workload, stack)}
    for item in UNIT_LINES:
        if item != "DynamoDB writes":
            assert by_measure[item].units == pytest.approx(by_model[item].units, rel=UNITS_TOLERANCE), item

    def writes(lines: dict[str, Line]) -> float:
        return lines["DynamoDB writes"].units + lines["DynamoDB writes (ordered frames stream)"].units

    assert by_model["DynamoDB writes (ordered frames stream)"].units > 0
    assert writes(by_measure) == pytest.approx(writes(by_model), rel=UNITS_TOLERANCE)
    assert (
        by_measure["SQS FIFO requests (ordered frames)"].units == by_model["SQS FIFO requests (ordered frames)"].units
    )
    assert by_model["SQS FIFO requests (ordered frames)"].units == 0
    # Every frame was a write and an invocation of the message function, no FIFO request.
    assert all(op.sqs_fifo == 0 for op in measured_stream.values())
    assert set(measured_stream["client_event"].lambdas) == {"message"}
    # its frame's PutItem on top of the limiter's writes
    assert measured_stream["client_event"].wru == pytest.approx(PROFILE["client_event"].wru + 1, rel=UNITS_TOLERANCE)
    total_measured = sum(line.usd() for line in by_measure.values())
    total_model = sum(line.usd() for line in by_model.values())
    assert total_measured == pytest.approx(total_model, rel=TOTAL_TOLERANCE)
