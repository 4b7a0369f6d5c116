"""The AWS services moto can play (DynamoDB, SQS) in server mode, with the resources CDK would create,
and the environment a deployed function would get."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings

REGION = "us-east-1"
# moto accepts any credentials; set only when none are configured, so a real profile is never shadowed.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"}
# How often SQS gives a failed webhook batch back, and how many times before the DLQ.
VISIBILITY_TIMEOUT_SECONDS = 5
MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class Resources:
    moto_url: str
    region: str
    table_name: str
    queue_url: str
    queue_arn: str
    dlq_url: str


class Moto:
    """moto in server mode (``ThreadedMotoServer``: a background thread) on a free port.

    Requests are served one at a time. DynamoDB guarantees that conditional writes and transactions are
    atomic, and the store's exactly-once decisions rely on it; moto's backends take no locks, so with
    concurrent request threads two Lambda "containers" could interleave inside one transaction and
    produce outcomes DynamoDB never would. Serialising requests restores DynamoDB's semantics; the cost is
    throughput (a few hundred calls a second), which is plenty here. SQS is therefore polled without long
    polling (a blocked receive would stall every other call).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        requests = self.requests = Counter[str]()

        def counting(app: Any) -> Any:
            """Count each AWS request by operation (what SQS bills), and DynamoDB's request units."""

            def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
                target = environ.get("HTTP_X_AMZ_TARGET", "")
                operation = target.rpartition(".")[2] or environ.get("QUERY_STRING", "")[:40] or "?"
                requests[operation] += 1
                if target.startswith("DynamoDB"):
                    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                    environ["wsgi.input"] = io.BytesIO(body)
                    for unit, amount in dynamodb_units(operation, body).items():
                        requests[unit] += amount
                return app(environ, start_response)

            return wsgi

        class SerialMotoServer(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = counting(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(
                    self._ip_address, self._port, app, threaded=False, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever(poll_interval=0.05)

        self._server = SerialMotoServer(ip_address=host, port=0, verbose=False)
        self.host = host
        self.url = ""

    def start(self) -> str:
        self._server.start()
        _host, port = self._server.get_host_and_port()
        self.url = f"http://{self.host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()


def dynamodb_units(operation: str, body: bytes) -> dict[str, int]:
    """Estimated on-demand request units of one DynamoDB call, for items under 1 KB (writes) and 4 KB
    (strongly consistent reads): 1 per item, doubled inside transactions. A query counts one unit per
    call, which holds for the store's small partitions."""
    if operation in ("GetItem", "Query", "Scan"):
        return {"RRU": 1}
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return {"WRU": 1}
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return {}
    if operation == "TransactWriteItems":
        return {"WRU": 2 * len(request.get("TransactItems", []))}
    if operation == "BatchWriteItem":
        return {"WRU": sum(len(items) for items in request.get("RequestItems", {}).values())}
    if operation == "BatchGetItem":
        return {"RRU": sum(len(r.get("Keys", [])) for r in request.get("RequestItems", {}).values())}
    return {}


def use_fake_credentials() -> None:
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


def client(service: str, moto_url: str, region: str = REGION) -> Any:
    import boto3

    return boto3.session.Session(region_name=region).client(service, endpoint_url=moto_url)


def create_resources(moto_url: str, *, prefix: str = "sockless", region: str = REGION) -> Resources:
    """The table and queues of the CDK stack: one table (TTL on), a webhook queue with a DLQ."""
    from shared.store.dynamodb import create_table

    table_name = f"{prefix}-state"
    create_table(client("dynamodb", moto_url, region), table_name)
    sqs = client("sqs", moto_url, region)
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-webhooks-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-webhooks",
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Resources(moto_url, region, table_name, queue_url, queue_arn, dlq_url)


def lambda_environment(
    settings: Settings,
    resources: Resources,
    *,
    aws_url: str,
    stage: str,
    function_names: dict[str, str],
) -> dict[str, str]:
    """The ``SOCKLESS_*`` variables CDK sets on every function, pointed at the emulator.

    The whole configuration travels as one JSON value per top-level setting (what pydantic-settings
    parses back), with the drivers switched to DynamoDB and SQS and the endpoints to moto and the
    emulator: the handlers read nothing else.
    """
    data = settings.model_dump(mode="json", by_alias=True, exclude={"store", "queue", "aws"})
    env = {
        f"SOCKLESS_{key.upper()}": value if isinstance(value, str) else json.dumps(value) for key, value in data.items()
    }
    env = {k: v for k, v in env.items() if v != "null"}
    store = {
        "driver": "dynamodb",
        "table_name": resources.table_name,
        "region": resources.region,
        "endpoint_url": resources.moto_url,
    }
    queue = {
        "driver": "sqs",
        "queue_url": resources.queue_url,
        "region": resources.region,
        "endpoint_url": resources.moto_url,
    }
    aws = {
        **settings.aws.model_dump(mode="json"),
        "region": resources.region,
        "management_endpoint_url": f"{aws_url}/{stage}",
        "lambda_endpoint_url": aws_url,
        "welcome_function": function_names["welcome"],
        "fanout_function": function_names["fanout"],
    }
    env["SOCKLESS_STORE"] = json.dumps(store)
    env["SOCKLESS_QUEUE"] = json.dumps(queue)
    env["SOCKLESS_AWS"] = json.dumps(aws)
    return env
