"""The AWS services moto can play (DynamoDB, SQS) in server mode, with the template's tables and queues,
and the environment a container of a function gets."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from local_server.emulator.iam import Iam
from local_server.emulator.template import Deployment, Function
from shared.settings import Settings

REGION = "us-east-1"
# moto accepts any credentials; set only when none are configured, so a real profile is never shadowed.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"}


class Moto:
    """moto in server mode (``ThreadedMotoServer``: a background thread) on a free port.

    Requests are served one at a time. DynamoDB guarantees that conditional writes and transactions are
    atomic, and the store's exactly-once decisions rely on it; moto's backends take no locks, so with
    concurrent request threads two Lambda "containers" could interleave inside one transaction and
    produce outcomes DynamoDB never would. Serialising requests restores DynamoDB's semantics; the cost is
    throughput (a few hundred calls a second), which is plenty here. SQS is therefore polled without long
    polling (a blocked receive would stall every other call).

    Every request passes ``_gate`` first: the IAM check (``iam.py``) and the count of requests and
    DynamoDB units by operation (``requests``, and ``observers`` for a billing meter).
    """

    def __init__(self, host: str = "127.0.0.1", iam: Iam | None = None) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.requests = Counter[str]()
        self.iam = iam
        # Told of every request: (service, operation, request body); on the moto thread.
        self.observers: list[Callable[[str, str, bytes], None]] = []
        gate = self._gate

        class SerialMotoServer(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = gate(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(
                    self._ip_address, self._port, app, threaded=False, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever(poll_interval=0.05)

        self._server = SerialMotoServer(ip_address=host, port=0, verbose=False)
        self.host = host
        self.url = ""

    def _gate(self, app: Any) -> Any:
        requests = self.requests

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            query = environ.get("QUERY_STRING", "")
            operation = target.rpartition(".")[2] or query[:40] or "?"
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            service = "dynamodb" if target.startswith("DynamoDB") else "sqs" if target.startswith("AmazonSQS") else ""
            if not service and "sqs" in environ.get("HTTP_AUTHORIZATION", ""):
                service = "sqs"
            requests[operation] += 1
            if service == "dynamodb":
                for unit, amount in dynamodb_units(operation, body).items():
                    requests[unit] += amount
            for observer in self.observers:
                observer(service, operation, body)
            if self.iam is not None and service:
                needs = (
                    self.iam.dynamodb(operation, body)
                    if service == "dynamodb"
                    else self.iam.sqs(operation, body, query)
                )
                denial = self.iam.check(environ.get("HTTP_AUTHORIZATION"), needs)
                if denial is not None:
                    status, headers, payload = self.iam.json_denial(denial, sqs=service == "sqs")
                    start_response(f"{status} Bad Request", list(headers.items()))
                    return [payload]
            return app(environ, start_response)

        return wsgi

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


def create_resources(deployment: Deployment) -> None:
    """The template's tables and queues, in moto, with the template's settings (the DLQs first: a queue's
    redrive policy names its DLQ)."""
    endpoints = deployment.endpoints
    dynamodb = client("dynamodb", endpoints.moto_url, endpoints.region)
    for table in deployment.tables:
        arguments: dict[str, Any] = {
            "TableName": table.name,
            "KeySchema": table.key_schema,
            "AttributeDefinitions": table.attributes,
            "BillingMode": "PAY_PER_REQUEST",
        }
        if table.indexes:
            arguments["GlobalSecondaryIndexes"] = [
                {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                for index in table.indexes
            ]
        dynamodb.create_table(**arguments)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    sqs = client("sqs", endpoints.moto_url, endpoints.region)
    queues = sorted(deployment.queues.values(), key=lambda q: "RedrivePolicy" in q.attributes)
    for queue in queues:
        sqs.create_queue(QueueName=queue.name, Attributes=queue.attributes)


def function_environment(
    function: Function, deployment: Deployment, access_key: str, overlay: dict[str, str]
) -> dict[str, str]:
    """What a container of ``function`` sees: the template's variables, what the Lambda runtime adds, its
    own credentials, and the service endpoints botocore reads from ``AWS_ENDPOINT_URL_<SERVICE>``."""
    endpoints = deployment.endpoints
    base = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith(("PYTHON", "LC_"))}
    runtime = {
        "AWS_REGION": endpoints.region,
        "AWS_DEFAULT_REGION": endpoints.region,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": "emulator",
        "AWS_SESSION_TOKEN": "emulator",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoints.moto_url,
        "AWS_ENDPOINT_URL_SQS": endpoints.moto_url,
        "AWS_ENDPOINT_URL_LAMBDA": endpoints.aws_url,
    }
    overlay = {k: v for k, v in overlay.items() if k not in function.environment}
    return {**base, **overlay, **function.environment, **runtime}


# Process variables a Lambda container may see too (not configuration: paths, locale, the test harness's).
INHERITED = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "ECHO_LOG")


def config_overlay(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """The config file's settings the stack has no place for (webhook timings, rate limits...), as
    ``SOCKLESS_*`` variables for every function, and the start-up notes naming them. The stack's own
    parts (apps, store, queue, endpoints) never come from here."""
    data = settings.model_dump(mode="json", by_alias=True, exclude_unset=True)
    env: dict[str, str] = {}
    for key, value in data.items():
        if key in NOT_OVERLAID:
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                if key == "aws" and sub in AWS_DEPLOYMENT_KEYS:
                    continue
                env[f"SOCKLESS_{key.upper()}__{sub.upper()}"] = item if isinstance(item, str) else json.dumps(item)
        else:
            env[f"SOCKLESS_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    notes = [f"config settings given to every function (not in the stack): {', '.join(sorted(env))}"] if env else []
    return env, notes


# Settings the stack (or the emulator's own serving) decides: never overlaid from the config file.
NOT_OVERLAID = ("apps", "store", "queue", "host", "port", "metrics_port", "debug_console", "admin_token",
                "event_loop", "shutdown_grace_seconds")  # fmt: skip
AWS_DEPLOYMENT_KEYS = ("region", "management_endpoint_url", "lambda_endpoint_url", "welcome_function",
                       "fanout_function")  # fmt: skip
