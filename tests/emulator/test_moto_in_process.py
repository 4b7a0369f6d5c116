"""The emulator's moto answers alike in-process and over HTTP, with IAM and the observers on both paths.

The emulator's own botocore clients reach moto without HTTP (``aws.Moto``: botocore ``before-call`` and
``before-send`` hooks); anything else (another process, the AWS CLI) talks to the same moto over HTTP. Both
paths go through one gate: the same answers, the same IAM denials, the same calls seen by the billing meter,
one request at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_server.emulator import aws
from local_server.emulator.iam import Iam, Principal

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "moto-in-process"
GRANT = {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": "*"}


@pytest.fixture(params=[False, True], ids=["moto-here", "moto-process"])
def moto(request: pytest.FixtureRequest) -> Iterator[aws.Moto]:
    """moto in this process, and in a process of its own (``--moto-process``) behind the same gate."""
    iam = Iam(region=REGION, account=ACCOUNT)
    iam.add("ASIAREADER", Principal("reader", "ReaderRole", (GRANT,)))
    moto = aws.Moto(iam=iam, process=request.param)
    moto.start()
    admin = client(moto.url, "AKIAADMIN", in_process=True)
    admin.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield moto
    admin.delete_table(TableName=TABLE)
    moto.stop()


def client(url: str, access_key: str, *, in_process: bool) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key="x", aws_session_token="x", region_name=REGION
    )
    dynamodb = session.client("dynamodb", endpoint_url=url)
    if not in_process:  # what a client of another process sees: the hook is not there
        dynamodb.meta.events.unregister("before-call", aws._before_call)
        dynamodb.meta.events.unregister("before-send", aws._before_send)
    return dynamodb


def answer(call: Any, **kwargs: Any) -> Any:
    try:
        response = call(**kwargs)
    except ClientError as exc:
        return exc.response["Error"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
    response.pop("ResponseMetadata")
    return response


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "http"])
def test_both_paths_answer_deny_and_report_alike(moto: aws.Moto, in_process: bool) -> None:
    seen: list[tuple[str, str, int, str]] = []
    moto.observers.append(
        lambda call: seen.append((call.service, call.operation, call.status, threading.current_thread().name))
    )
    reader = client(moto.url, "ASIAREADER", in_process=in_process)
    item = {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert answer(reader.put_item, TableName=TABLE, Item=item) == {}
    assert answer(reader.get_item, TableName=TABLE, Key={"pk": {"S": "a"}}) == {"Item": item}
    error, status = answer(reader.delete_item, TableName=TABLE, Key={"pk": {"S": "a"}})
    assert (error["Code"], status) == ("AccessDeniedException", 400)
    assert "dynamodb:DeleteItem" in error["Message"]
    error, status = answer(reader.get_item, TableName="no-such-table", Key={"pk": {"S": "a"}})
    assert (error["Code"], status) == ("ResourceNotFoundException", 400)
    # The denied call never reached DynamoDB: the meter sees three calls, on the caller's thread when moto
    # runs here and is reached in-process, else on the thread that takes the answers (moto's server's, or
    # the reader of the moto process's).
    assert [(s, o, st) for s, o, st, _ in seen] == [
        ("dynamodb", "PutItem", 200),
        ("dynamodb", "GetItem", 200),
        ("dynamodb", "GetItem", 400),
    ]
    on_caller = {name == threading.current_thread().name for *_, name in seen}
    assert on_caller == {in_process and moto._process is None}
    assert moto.requests["DeleteItem"] == 1
