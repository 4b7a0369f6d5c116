"""The functions run with the environment the synthesized template gives them, nothing added by the test.

Each function's ``Environment`` is taken from the template, its references resolved to moto's resources
(the table, the queue, and the app secrets the template creates, which the functions read from Secrets
Manager themselves), and the handler's first invocation builds its services from it. A variable the
template forgets (the webhooks function without the management endpoint it used to require, #14 defect 1)
or a secret a function cannot find fails here as it would on AWS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cdk.stack import FUNCTIONS
from tests.cdk.conftest import Synth, render, synthesize
from tests.emulator.awsstub import WebhookReceiver

REGION = "us-east-1"
ACCOUNT = "123456789012"
TEST_SECRET = "template-test-secret"


@dataclass
class Deployed:
    synth: Synth
    receiver: WebhookReceiver


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A stack whose one app sends webhooks to a local receiver (started first: its URL is in the apps file)."""
    receiver = WebhookReceiver()
    apps = tmp_path_factory.mktemp("apps") / "apps.json"
    apps.write_text(json.dumps([{"id": "100001", "key": "template-key", "webhooks": [{"url": receiver.url}]}]))
    try:
        yield Deployed(synthesize({"apps_file": str(apps)}), receiver)
    finally:
        receiver.stop()


@dataclass
class Moto:
    table: str
    queue_url: str
    sqs: Any
    secrets: dict[str, str]  # logical id of each AWS::SecretsManager::Secret -> the ARN of moto's


def function_environment(synth: Synth, name: str, placeholders: dict[str, str]) -> dict[str, str]:
    """``name``'s variables as Lambda hands them over: references to the stack's own resources become the
    test's resources."""
    variables = synth.environment(FUNCTIONS[name].handler)
    return {key: render(value, placeholders) for key, value in variables.items()}


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch, deployed: Deployed) -> Iterator[Moto]:
    import boto3
    from moto import mock_aws

    from functions import runtime
    from shared.store.dynamodb import create_table

    for key in [k for k in os.environ if k.startswith("SOCKLESS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name=REGION), "sockless-state")
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="sockless-webhooks")["QueueUrl"]
        secretsmanager = boto3.client("secretsmanager", region_name=REGION)
        secrets = {
            logical_id: secretsmanager.create_secret(Name=logical_id, SecretString=TEST_SECRET)["ARN"]
            for logical_id in deployed.synth.of_type("AWS::SecretsManager::Secret")
        }
        runtime.reset()
        yield Moto("sockless-state", queue_url, sqs, secrets)
        runtime.reset()


def use_environment(monkeypatch: pytest.MonkeyPatch, deployed: Deployed, aws: Moto, name: str) -> None:
    synth = deployed.synth
    table_id, _ = synth.one("AWS::DynamoDB::GlobalTable")
    queue_id = next(k for k, v in synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" in v["Properties"])
    api_id, _ = synth.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    placeholders = {
        table_id: aws.table,
        queue_id: aws.queue_url,
        api_id: "abc123",
        "AWS::Region": REGION,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        **aws.secrets,
        **{logical_id: f"sockless-{logical_id}" for logical_id in synth.of_type("AWS::Lambda::Function")},
    }
    for key, value in function_environment(synth, name, placeholders).items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_builds_its_services_from_the_template_environment(
    monkeypatch: pytest.MonkeyPatch, deployed: Deployed, moto_aws: Moto, name: str
) -> None:
    from functions import runtime

    use_environment(monkeypatch, deployed, moto_aws, name)
    services = runtime.container().services
    assert [(app.key, app.secret) for app in services.settings.apps] == [("template-key", TEST_SECRET)]


def test_the_webhooks_function_delivers_with_the_template_environment(
    monkeypatch: pytest.MonkeyPatch, deployed: Deployed, moto_aws: Moto
) -> None:
    from functions.webhooks.handler import handler
    from local_server.emulator.lambdas import LambdaContext

    use_environment(monkeypatch, deployed, moto_aws, "webhooks")
    job = {"app_id": "100001", "event": {"name": "channel_occupied", "channel": "c"}, "target": 0, "time_ms": 1}
    record = {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": json.dumps(job),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:sockless-webhooks",
        "awsRegion": REGION,
    }
    result = handler({"Records": [record]}, LambdaContext(function_name="sockless-webhooks", region=REGION))
    assert result == {"batchItemFailures": []}
    assert deployed.receiver.events() == [{"name": "channel_occupied", "channel": "c"}]


@pytest.mark.redis
def test_the_valkey_variant_runs_against_a_redis_cluster(monkeypatch: pytest.MonkeyPatch, valkey: Synth) -> None:
    """ElastiCache Serverless is cluster mode only: with the Valkey template's environment, the message
    function records and finds connections of several apps on a real three-shard Redis Cluster (TLS aside:
    ``rediss`` becomes ``redis`` locally). Without SOCKLESS_STORE__CLUSTER_MODE its plain client fails
    with MOVED on every key outside the first node's slots (#14 defect 6)."""
    from urllib.parse import urlparse

    from functions import runtime
    from shared.settings import AppConfig
    from tests.redis.backend import redis_cluster_url

    cluster = urlparse(redis_cluster_url())
    cache_id = next(iter(valkey.of_type("AWS::ElastiCache::ServerlessCache")))
    api_id, _ = valkey.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    placeholders = {
        f"{cache_id}": "unused",
        api_id: "abc123",
        "AWS::Region": REGION,
        "AWS::URLSuffix": "amazonaws.com",
        **{logical_id: f"sockless-{logical_id}" for logical_id in valkey.of_type("AWS::Lambda::Function")},
    }
    variables = function_environment(valkey, "message", placeholders)
    variables["SOCKLESS_STORE__URL"] = f"redis://{cluster.hostname}:{cluster.port}"
    variables.pop("APP_SECRETS")
    for key in [k for k in os.environ if k.startswith("SOCKLESS_")]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    apps = [{"id": str(n), "key": f"cluster-key-{n}", "secret": "s"} for n in range(1, 7)]
    monkeypatch.setenv("SOCKLESS_APPS", json.dumps(apps))
    monkeypatch.setenv("SOCKLESS_STORE__PREFIX", f"cluster-{os.getpid()}")
    monkeypatch.setenv("AWS_REGION", REGION)  # the AWS clients are built, never called
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    runtime.reset()
    try:
        current = runtime.container()
        assert current.settings.store.cluster_mode is True
        for n, app in enumerate(apps):
            config = AppConfig.model_validate(app)
            connection = current.run(current.connections.open(config, f"cid-{n}="))
            assert current.run(current.connections.lookup(f"cid-{n}=")) is not None, connection
    finally:
        runtime.reset()
