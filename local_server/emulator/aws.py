"""The AWS services moto can play (DynamoDB, SQS), in the emulator's process, with the template's tables and
queues, and the environment a container of a function gets."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from local_server.emulator.iam import Iam
from local_server.emulator.lambdas import process_environment
from local_server.emulator.moto_process import MotoProcess, Reply, Request
from local_server.emulator.template import Deployment, Function
from shared.settings import Settings

REGION = "us-east-1"
# moto accepts any credentials; set only when none are configured, so a real profile is never shadowed.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"}


class Moto:
    """moto's DynamoDB and SQS: called in-process by every botocore client of the emulator's process whose
    endpoint is ``url`` (the functions', the event source mappings', the emulator's own), and served over
    HTTP at ``url`` for anything else (another process, the AWS CLI).

    In-process, a request never leaves the calling thread: a botocore ``before-call`` hook
    (``moto_calls.py``) hands the serialized request, unsigned, to moto's DynamoDB or SQS responder
    (``_in_process``) and parses its answer with botocore's own parser, as moto's own ``mock_aws`` does one
    step later (``before-send``, the fallback here); the HTTP round trip, the server's parsing, moto's Flask
    routing, botocore's signing and send loop are what it saves (bench/RESULTS.md, "Emulator speed").

    With ``process=True`` (the emulator's default) moto itself runs in a child process (``moto_process.py``), on
    another core than the functions and API Gateway's stand-in: ``_serve`` keeps the count and the IAM check
    here and forwards the request there (``_forward``); the observers run on each answer as it comes back, in
    the order the child served them (``_answered``). What follows holds for both.

    Requests are served one at a time (``_lock``, or the child's single loop), however they arrive. DynamoDB
    guarantees that conditional writes and transactions are atomic, and the store's exactly-once decisions rely
    on it; moto applies a request in several steps and takes no locks, so two Lambda "containers" interleaving
    inside one transaction would produce outcomes DynamoDB never would. SQS is therefore polled without long polling
    (a blocked receive would stall every other call).

    Every request passes ``_serve`` first: the IAM check (``iam.py``), the count of requests by operation
    (``requests``), then, for the requests that reach the service, ``observers`` (the billing meter) with the
    request, the response and, for DynamoDB writes, the size each item had before the call (what a write
    is billed by when it is larger than the new item). ``cpu_seconds`` adds up the CPU those steps took, on
    whichever thread called: the emulated services' share of the process, which no function pays on AWS
    (bench/emulator_fanout.py tells it apart from the functions' own).
    """

    def __init__(self, host: str = "127.0.0.1", iam: Iam | None = None, *, process: bool = False) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.requests = Counter[str]()
        self.cpu_seconds = 0.0
        self.process_cpu_seconds = 0.0  # the part of ``cpu_seconds`` spent in the moto process (process=True)
        self.iam = iam
        # Told of every request that reached DynamoDB or SQS; under ``_lock``, on the caller's thread.
        self.observers: list[Callable[[AwsCall], None]] = []
        self._lock = threading.Lock()
        # process=True: moto runs in a child process (moto_process.py), this process keeps the gate.
        self._process = MotoProcess(self._answered) if process else None
        wsgi = self._wsgi

        class SerialMotoServer(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = wsgi(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(
                    self._ip_address, self._port, app, threaded=False, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever(poll_interval=0.05)

        self._server = SerialMotoServer(ip_address=host, port=0, verbose=False)
        self.host = host
        self.url = ""

    def _serve(
        self,
        header: Callable[[str], str | None],
        query: str,
        body: bytes,
        moto: Responder,
        forward: Forward | None = None,
    ) -> Answer:
        """One request (its headers by ``header(name)``, query string and body) through the gate to ``moto``, or,
        with moto in a process of its own, to that process (``forward``: the request's method, URL, headers)."""
        target = header("X-Amz-Target") or ""
        operation = target.rpartition(".")[2] or query[:40] or "?"
        service = _service(target, header("Authorization"))
        if self._process is not None:
            return self._forward(operation, service, header, body, query, forward)
        with self._lock:
            started = time.thread_time()
            try:
                return self._gate(operation, service, header, body, query, moto)
            finally:
                self.cpu_seconds += time.thread_time() - started

    def _gate(
        self,
        operation: str,
        service: str,
        header: Callable[[str], str | None],
        body: bytes,
        query: str,
        moto: Responder,
    ) -> Answer:
        """``_serve`` under the lock: count, IAM, moto, observers."""
        self.requests[operation] += 1
        denial = self._denial(operation, service, header, body, query)
        if denial is not None:
            return denial
        if not self.observers or not service:
            return moto()
        sizes = item_sizes_before(operation, body) if service == "dynamodb" else {}
        status, headers_out, response = moto()
        call = AwsCall(service, operation, body, response, status, sizes)
        for observer in self.observers:
            observer(call)
        return status, headers_out, response

    def _denial(
        self, operation: str, service: str, header: Callable[[str], str | None], body: bytes, query: str
    ) -> Answer | None:
        """IAM's refusal of the request, as AWS answers it, or None."""
        if self.iam is None or not service:
            return None
        needs = self.iam.dynamodb(operation, body) if service == "dynamodb" else self.iam.sqs(operation, body, query)
        denial = self.iam.check(header("Authorization"), needs)
        if denial is None:
            return None
        status, headers, payload = self.iam.json_denial(denial, sqs=service == "sqs")
        return status, list(headers.items()), payload

    def _forward(
        self,
        operation: str,
        service: str,
        header: Callable[[str], str | None],
        body: bytes,
        query: str,
        forward: Forward | None,
    ) -> Answer:
        """The gate with moto in its own process: count and IAM here, the request there, the observers on
        the answer as it comes back (``_answered``, in the order moto served them)."""
        assert self._process is not None
        started = time.thread_time()
        denial = self._denial(operation, service, header, body, query)
        with self._lock:
            self.requests[operation] += 1
            self.cpu_seconds += time.thread_time() - started
        if denial is not None:
            return denial
        if not service or forward is None:  # the emulator plays DynamoDB and SQS only
            return 400, [("Content-Type", "application/json")], b'{"message": "not emulated"}'
        method, url, headers = forward
        sizes = bool(self.observers) and service == "dynamodb"
        status, headers_out, response, _sizes, _cpu = self._process.call(
            (service, method, url, headers, body, operation, sizes)
        )
        return status, headers_out, response

    def _answered(self, request: Request, reply: Reply) -> None:
        """On the reader thread, for each answer of the moto process in turn: its CPU, the observers."""
        service, _method, _url, _headers, body, operation, _sizes = request
        status, _headers_out, response, sizes, cpu = reply
        with self._lock:
            self.cpu_seconds += cpu
            self.process_cpu_seconds += cpu
        if self.observers:
            call = AwsCall(service, operation, body, response, status, sizes)
            for observer in self.observers:
                observer(call)

    def _wsgi(self, app: Any) -> Any:
        """The HTTP server's application: ``_serve`` in front of moto's own WSGI app."""

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)

            def moto() -> Answer:
                answer: list[tuple[str, list[tuple[str, str]]]] = []

                def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                    answer.append((status, headers))
                    return lambda _data: None

                response = b"".join(app(environ, respond))
                status_line, headers = answer[0] if answer else ("500 Internal Server Error", [])
                return int(status_line.split()[0]), headers, response

            def header(name: str) -> str | None:
                value = environ.get("HTTP_" + name.upper().replace("-", "_"))
                return None if value is None else str(value)

            query = environ.get("QUERY_STRING", "")
            forward: Forward | None = None
            if self._process is not None:
                url = f"http://{environ.get('HTTP_HOST', self.host)}{environ.get('PATH_INFO', '/')}"
                headers_in = {
                    key[5:].replace("_", "-").title(): str(value)
                    for key, value in environ.items()
                    if key.startswith("HTTP_")
                }
                if environ.get("CONTENT_TYPE"):
                    headers_in["Content-Type"] = str(environ["CONTENT_TYPE"])
                forward = (environ.get("REQUEST_METHOD", "POST"), url + (f"?{query}" if query else ""), headers_in)
            status, headers, response = self._serve(header, query, body, moto, forward)
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
            start_response(f"{status} {phrase}", headers)
            return [response]

        return wsgi

    def _in_process(self, request: Any) -> Any:
        """The botocore response to ``request`` (an ``AWSPreparedRequest`` to ``url``), or None to send it
        over HTTP (a service other than DynamoDB and SQS)."""
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        service = _service(header("X-Amz-Target") or "", header("Authorization"))
        if not service:
            return None
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        body = body.encode() if isinstance(body, str) else bytes(body or b"")
        request.body = body
        forward: Forward | None = None
        if self._process is not None:
            headers_in = {str(k): str(header(k)) for k in request.headers}
            forward = (str(request.method), str(request.url), headers_in)
        status, headers_out, response = self._serve(
            header, urlsplit(request.url).query, body, lambda: dispatch(service, request), forward
        )
        return AWSResponse(request.url, status, dict(headers_out), MockRawResponse(response))

    def start(self) -> str:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        from local_server.emulator import moto_speed

        if self._process is not None:
            self._process.start()
        else:
            moto_speed.install(dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION])
        self._server.start()
        _host, port = self._server.get_host_and_port()
        self.url = f"http://{self.host}:{port}"
        _install_hook()
        _RUNNING[self.url] = self
        return self.url

    def stop(self) -> None:
        _RUNNING.pop(self.url, None)
        self._server.stop()
        if self._process is not None:
            self._process.stop()


# (status, headers, body) of one answer, and what produces moto's.
Answer = tuple[int, list[tuple[str, str]], bytes]
Responder = Callable[[], Answer]
Forward = tuple[str, str, dict[str, str]]  # a request's method, URL and headers, for the moto process
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/")
# The running emulators' moto by URL (``scheme://host:port``): what the botocore hook serves in-process.
_RUNNING: dict[str, Moto] = {}


def _service(target: str, authorization: str | None) -> str:
    """``dynamodb``, ``sqs`` or "" (another service) from the request's target or signature scope."""
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    match = _CREDENTIAL_SCOPE.search(authorization or "")
    return "sqs" if match and match.group(1) == "sqs" else ""


def _install_hook() -> None:
    """Once per process: botocore sessions created from now on hand a call for a running moto's URL to it at
    ``before-call`` (``moto_calls.py``) or, when that cannot be done exactly, its signed request at
    ``before-send`` to ``Moto._in_process`` (moto's ``mock_aws`` hooks botocore the same way)."""
    from botocore.handlers import BUILTIN_HANDLERS

    if any(handler is _before_send for _event, handler, *_ in BUILTIN_HANDLERS):
        return
    BUILTIN_HANDLERS.append(("before-call", _before_call))
    BUILTIN_HANDLERS.append(("before-send", _before_send))


def _before_call(**kwargs: Any) -> Any:
    """A call for a running moto, answered before botocore signs and sends it (``moto_calls.py``)."""
    from local_server.emulator.moto_calls import before_call

    return before_call(_RUNNING, **kwargs)


def _before_send(request: Any, **_kwargs: Any) -> Any:
    parts = urlsplit(request.url)
    moto = _RUNNING.get(f"{parts.scheme}://{parts.netloc}")
    return None if moto is None else moto._in_process(request)


def dispatch(service: str, request: Any) -> Answer:
    """moto's responder for ``service`` on ``request``, seeing the process environment (on a Lambda
    container's thread ``os.environ`` is the function's: ``lambdas.ThreadEnviron``)."""
    from botocore.exceptions import ClientError
    from moto.core.request import normalize_request
    from moto.core.responses import BaseResponse
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.responses import SQSResponse
    from werkzeug.exceptions import HTTPException

    responder: type[BaseResponse] = DynamoHandler if service == "dynamodb" else SQSResponse
    normalized = normalize_request(request)
    with process_environment():
        try:
            status, headers, body = responder.dispatch(normalized, normalized.raw_url, normalized.headers)
        except HTTPException as exc:  # moto's service errors (JsonRESTError) are werkzeug's
            status, headers, body = exc.code or 500, dict(exc.get_headers()), exc.get_body()
        except ClientError as exc:  # what moto's server answers for a ClientError raised inside moto
            status, headers, body = 400, {}, str(exc.response["Error"]["Message"])
    content = body.encode() if isinstance(body, str) else bytes(body)
    return int(status), [(str(k), str(v)) for k, v in dict(headers).items()], content


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


def share_botocore_data() -> None:
    """Once per process: every botocore session shares one data loader per data path, so the service models
    and the endpoint rules (megabytes of JSON) are parsed once, not once per Lambda container: on AWS a
    container's INIT parses them, here they were a third of the emulator's start-up and of every cold
    container. (Like the modules the handlers import, which are imported once per process too, they are no
    longer counted in the INIT the emulator measures.)"""
    import botocore.session

    original = botocore.session.create_loader
    if getattr(original, "shared", False):
        return
    loaders: dict[str | None, Any] = {}
    lock = threading.Lock()

    def create_loader(search_path_string: str | None = None) -> Any:
        with lock:
            if search_path_string not in loaders:
                loaders[search_path_string] = original(search_path_string)
            return loaders[search_path_string]

    create_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = create_loader


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
