"""The AWS services moto can play (DynamoDB, SQS) in server mode, with the template's tables and queues,
and the environment a container of a function gets."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

    Every request passes ``_gate`` first: the IAM check (``iam.py``), the count of requests by operation
    (``requests``), then, for the requests that reach the service, ``observers`` (the billing meter) with the
    request, the response and, for DynamoDB writes, the size each item had before the call (what a write
    is billed by when it is larger than the new item).
    """

    def __init__(self, host: str = "127.0.0.1", iam: Iam | None = None) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.requests = Counter[str]()
        self.iam = iam
        # Told of every request that reached DynamoDB or SQS; on the moto thread.
        self.observers: list[Callable[[AwsCall], None]] = []
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
            if not self.observers or not service:
                return app(environ, start_response)
            sizes = item_sizes_before(operation, body) if service == "dynamodb" else {}
            answer: list[str] = []

            def respond(status: str, headers: Any, exc_info: Any = None) -> Any:
                answer.append(status)
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            response = b"".join(app(environ, respond))
            status = int(answer[0].split()[0]) if answer else 0
            call = AwsCall(service, operation, body, response, status, sizes)
            for observer in self.observers:
                observer(call)
            return [response]

        return wsgi

    def start(self) -> str:
        self._server.start()
        _host, port = self._server.get_host_and_port()
        self.url = f"http://{self.host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True)
class AwsCall:
    """One request that reached moto, as the meter sees it."""

    service: str  # "dynamodb" or "sqs"
    operation: str
    request: bytes
    response: bytes
    status: int
    sizes: dict[tuple[str, str], int | None]  # DynamoDB writes: (table, key) -> the item's size before

    def size_of(self, table: str, key: Mapping[str, Any]) -> int | None:
        return self.sizes.get((table, _key_text(key)))


WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def item_sizes_before(operation: str, body: bytes) -> dict[tuple[str, str], int | None]:
    """The size of each item a DynamoDB write names, read from moto's tables before the write (requests
    are served one at a time, so nothing changes in between)."""
    if operation not in WRITES:
        return {}
    from cost.meter import item_size, request_json

    request = request_json(body)
    targets: list[tuple[str, Mapping[str, Any]]] = []  # (table, Key or Item)
    if operation == "TransactWriteItems":
        for element in request.get("TransactItems", []):
            for part in element.values():
                targets.append((str(part.get("TableName", "")), part.get("Key") or part.get("Item") or {}))
    elif operation == "BatchWriteItem":
        for table, entries in request.get("RequestItems", {}).items():
            for entry in entries:
                part = entry.get("PutRequest") or entry.get("DeleteRequest") or {}
                targets.append((table, part.get("Key") or part.get("Item") or {}))
    else:
        targets.append((str(request.get("TableName", "")), request.get("Key") or request.get("Item") or {}))
    sizes: dict[tuple[str, str], int | None] = {}
    for table_name, fields in targets:
        key, found = _moto_item(table_name, fields)
        sizes[(table_name, _key_text(key))] = None if found is None else item_size(found)
    return sizes


def _moto_item(table_name: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The key among ``fields`` (a Key, or a whole Item) and the item moto holds under it."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
    try:
        table = backend.get_table(table_name)
        names = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
        key = {name: fields[name] for name in names if name in fields}
        item = backend.get_item(table_name, key)
    except Exception:  # an unknown table or a malformed key: the request itself fails the same way
        return dict(fields), None
    return key, None if item is None else item.to_json()["Attributes"]


def _key_text(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


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
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
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
