"""The emulator's one billing meter (cost/meter.py), fed from its seams: every Lambda invocation with its
function's memory and cold-start INIT, what the functions print (CloudWatch Logs), every DynamoDB and SQS
request that reached moto with its response; the WebSocket and HTTP APIs count their own messages,
connection-minutes and requests on the same meter (``websocket.py``, ``http_api.py``)."""

from __future__ import annotations

from collections.abc import Callable

from cost.meter import PLATFORM_LOG_BYTES, Meter, request_json
from local_server.emulator.aws import AwsCall, Moto
from local_server.emulator.lambdas import Invocation, LambdaService


def attach(meter: Meter, lambdas: LambdaService, moto: Moto) -> Callable[[], None]:
    """Observe ``lambdas`` and ``moto`` with ``meter``; returns what detaches it (and restores stdout)."""

    def invocation(done: Invocation) -> None:
        meter.invocation(done.function, done.wall_ms / 1000, done.memory_mb, done.init_ms / 1000)
        if done.platform_logs:  # START, END and REPORT: written by Lambda, not by the handler
            meter.log_bytes(PLATFORM_LOG_BYTES)

    def printed(_function: str, size: int) -> None:
        meter.log_bytes(size)

    def aws_call(call: AwsCall) -> None:
        if call.service == "dynamodb":
            meter.dynamodb(call.operation, request_json(call.request), request_json(call.response), call.size_of)
        elif call.service == "sqs":
            meter.sqs(call.operation, request_json(call.request), request_json(call.response))

    lambdas.observers.append(invocation)
    lambdas.log_observers.append(printed)
    moto.observers.append(aws_call)
    restore = lambdas.capture_logs()

    def detach() -> None:
        restore()
        lambdas.observers.remove(invocation)
        lambdas.log_observers.remove(printed)
        moto.observers.remove(aws_call)

    return detach
