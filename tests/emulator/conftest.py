"""Fixtures for the Lambda code path.

Two kinds of tests live here:
- handler tests call ``functions/*`` directly with the recorded events of ``tests/events/``, with DynamoDB
  and SQS in moto (``mock_aws``, in-process) and the management and Invoke APIs on a real stub server;
- emulator tests start ``python -m local_server --emulate-lambda`` (API Gateway + Lambda emulated, moto in
  the emulator's process) and run the real clients against it, re-using the end-to-end suites of the local
  server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEFAULT_APP, NUMERIC_APP
from tests.e2e.conftest import numeric_app, python_sdk  # noqa: F401  (the re-used suites' fixtures)
from tests.emulator.awsstub import AwsStub, Recorder
from tests.rest.conftest import connect, numeric, sdk, uid  # noqa: F401
from tests.serverproc import ServerProcess
from tests.webhooks.conftest import receiver, session  # noqa: F401

EVENTS = Path(__file__).resolve().parent.parent / "events"
EMULATE = ("--emulate-lambda", "--sweep-interval", "0")
REGION = "us-east-1"


def recorded(name: str) -> dict[str, Any]:
    """A recorded AWS event from ``tests/events/`` (a fresh copy: tests may edit it)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


# -- handler tests (in-process) -------------------------------------------------------------------------


@dataclass
class Aws:
    """The in-process AWS of a handler test: moto's DynamoDB and SQS, and the stub endpoint."""

    stub: Recorder
    stub_url: str
    table_name: str
    queue_url: str
    sqs: Any
    dynamodb: Any
    wrapped: dict[int, Any]  # the handlers' DynamoDB clients (AtomicRequests), which record each call

    def dynamodb_calls(self) -> int:
        """DynamoDB calls the handlers made so far (all containers)."""
        return sum(len(client.calls) for client in self.wrapped.values())

    def queued_jobs(self) -> list[dict[str, Any]]:
        """Webhook jobs waiting in the queue (received and left invisible: call once per check)."""
        jobs: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return jobs
            jobs.extend(json.loads(m["Body"]) for m in messages)


def handler_environment(stub_url: str, table_name: str, queue_url: str, apps: list[dict[str, Any]]) -> dict[str, str]:
    """What CDK sets on the functions, with the management and Invoke endpoints at the stub."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "SOCKLESS_APPS": json.dumps(apps),
        "SOCKLESS_WEBHOOKS": json.dumps({"delay_seconds": 1.0}),
        "SOCKLESS_STORE": json.dumps({"driver": "dynamodb", "table_name": table_name, "region": REGION}),
        "SOCKLESS_QUEUE": json.dumps({"driver": "sqs", "queue_url": queue_url, "region": REGION}),
        "SOCKLESS_AWS": json.dumps(
            {
                "region": REGION,
                "management_endpoint_url": f"{stub_url}/prod",
                "lambda_endpoint_url": stub_url,
                "welcome_function": "sockless-welcome",
                "fanout_function": "sockless-fanout",
                "welcome_retry_interval_ms": 10,
                "welcome_retry_seconds": 0.5,
            }
        ),
    }


@pytest.fixture
def handler_apps() -> list[dict[str, Any]]:
    """The apps the handler tests' functions are configured with (override per module)."""
    return [DEFAULT_APP, NUMERIC_APP]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, handler_apps: list[dict[str, Any]]) -> Iterator[Aws]:
    import boto3
    from moto import mock_aws

    from functions import runtime
    from shared.store.dynamodb import create_table
    from tests.aws.backend import AtomicRequests

    # moto applies a DynamoDB request in several steps; real DynamoDB applies each atomically (see
    # tests/aws/backend.py). One lock per client restores that while the handlers' calls still interleave.
    atomic: dict[int, AtomicRequests] = {}
    build_client = runtime.Container.client

    def atomic_client(self: runtime.Container, service: str, *args: Any, **kwargs: Any) -> Any:
        client = build_client(self, service, *args, **kwargs)
        if service != "dynamodb":
            return client
        return atomic.setdefault(id(client), AtomicRequests(client))

    monkeypatch.setattr(runtime.Container, "client", atomic_client)
    stub = AwsStub().start()
    for key in [k for k in os.environ if k.startswith("SOCKLESS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        with mock_aws():
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            create_table(dynamodb, "sockless-state")
            sqs = boto3.client("sqs", region_name=REGION)
            queue_url = sqs.create_queue(QueueName="sockless-webhooks")["QueueUrl"]
            for key, value in handler_environment(stub.url, "sockless-state", queue_url, handler_apps).items():
                monkeypatch.setenv(key, value)
            runtime.reset()
            yield Aws(stub.recorder, stub.url, "sockless-state", queue_url, sqs, dynamodb, atomic)
            runtime.reset()
    finally:
        stub.stop()


# -- emulator tests (a subprocess) ----------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _template() -> None:
    """Synthesize the stack once, before any emulator starts: a start then reads the cached template
    (``local_server/emulator/synth.py``) instead of spending its start-up timeout on ``cdk synth``."""
    from local_server.emulator import synth

    synth.template()


@pytest.fixture(scope="module", autouse=True)
def _every_server_emulates() -> Iterator[None]:
    """Servers the re-used suites start themselves (``ServerProcess(...)`` in their module fixtures) run
    the emulator too; module-scoped, so it is in place before those fixtures and gone after the module."""
    original = ServerProcess.__init__

    def init(self: ServerProcess, config: dict[str, Any], *, args: tuple[str, ...] = (), **kwargs: Any) -> None:
        original(self, config, args=args if "--emulate-lambda" in args else (*EMULATE, *args), **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ServerProcess, "__init__", init)
        yield


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """The emulator with the default apps: what the re-used end-to-end tests call ``server``."""
    proc = ServerProcess({"apps": [DEFAULT_APP, NUMERIC_APP]}, args=EMULATE).start(timeout=60)
    yield proc
    proc.cleanup()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """An emulator with a test's own config (``args`` add emulator flags, e.g. ``--sweep-interval``)."""
    started: list[ServerProcess] = []

    def start(config: dict[str, Any], *, args: tuple[str, ...] = (), **kwargs: Any) -> ServerProcess:
        proc = ServerProcess(config, args=(*EMULATE, *args), **kwargs).start(timeout=60)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()
