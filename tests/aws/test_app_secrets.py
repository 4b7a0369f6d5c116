"""functions/app_secrets.py against moto's Secrets Manager and SSM: what a container reads at its first
invocation when the stack keeps app secrets out of the template (#14 defect 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.app_secrets import AppSecretError, apps_with_secrets

REGION = "us-east-1"
APPS = [{"id": "1", "key": "k1"}, {"id": "2", "key": "k2", "max_connections": 5}, {"id": "3", "key": "k3"}]


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def _environ(spec: dict[str, Any]) -> dict[str, str]:
    return {"SOCKLESS_APPS": json.dumps(APPS), "APP_SECRETS": json.dumps(spec)}


def test_secrets_manager_references_by_arn_suffix_by_whole_arn_and_by_json_key(moto: None) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    first = client.create_secret(Name="AppsSecret1", SecretString="one")["ARN"]
    second = client.create_secret(Name="elsewhere", SecretString=json.dumps({"pusher": "two"}))["ARN"]
    prefix, _, suffix = first.partition(":secret:")
    spec = {
        "source": "secretsmanager",
        "arn_prefix": prefix + ":secret:",
        "apps": {"1": suffix, "2": f"{second}#pusher"},
    }
    apps = apps_with_secrets(_environ(spec))
    assert apps == [
        {"id": "1", "key": "k1", "secret": "one"},
        {"id": "2", "key": "k2", "max_connections": 5, "secret": "two"},
        {"id": "3", "key": "k3"},  # no reference: left as it is (the settings then refuse it)
    ]


def test_ssm_secure_strings_are_the_other_source(moto: None) -> None:
    client = boto3.client("ssm", region_name=REGION)
    for n in range(1, 4):
        client.put_parameter(Name=f"/sockless/apps/{n}", Value=f"ssm-{n}", Type="SecureString")
    spec = {"source": "ssm", "apps": {str(n): f"/sockless/apps/{n}" for n in range(1, 4)}}
    apps = apps_with_secrets(_environ(spec))
    assert apps is not None
    assert [app["secret"] for app in apps] == ["ssm-1", "ssm-2", "ssm-3"]


def test_a_missing_secret_names_the_app(moto: None) -> None:
    spec = {"source": "secretsmanager", "arn_prefix": "", "apps": {"2": "arn:aws:secretsmanager:us-east-1:1:secret:x"}}
    with pytest.raises(AppSecretError, match="app 2"):
        apps_with_secrets(_environ(spec))


def test_a_missing_json_key_is_an_error_not_the_whole_json(moto: None) -> None:
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="j", SecretString='{"a": "b"}')["ARN"]
    spec = {"source": "secretsmanager", "arn_prefix": "", "apps": {"1": f"{arn}#pusher"}}
    with pytest.raises(AppSecretError, match="no JSON key 'pusher'"):
        apps_with_secrets(_environ(spec))


def test_without_app_secrets_the_apps_are_left_to_the_settings() -> None:
    assert apps_with_secrets({"SOCKLESS_APPS": json.dumps(APPS)}) is None
