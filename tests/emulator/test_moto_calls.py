"""A call handed to moto at ``before-call`` (``moto_calls.py``) answers exactly as botocore's full path does.

Two clients of the same principal run the same script of DynamoDB and SQS calls, each against a region of
its own in the same moto (same table, same queues): one as the emulator's clients are built (the
``before-call`` hook), one with that hook taken off, so its calls are signed and go through botocore's
send loop to the ``before-send`` hook, as they did before. Every answer must be the same: the parsed
result (bytes for binary attributes, modeled error fields, ``ResponseMetadata`` status and retries), the
exception class and error of a failure (a condition, a cancelled transaction, a validation error, an
unknown table or queue, an IAM denial), and the calls the gate's observers see. Values moto makes up per
call (request and message ids, receipt handles, timestamps) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_server.emulator import aws
from local_server.emulator.iam import Iam, Principal
from shared.dynamodb.table import create_table

ACCOUNT = "123456789012"
DIRECT, FULL = "us-east-1", "eu-west-1"
TABLE = "calls"
WRITER = {"Effect": "Allow", "Action": ["dynamodb:*", "sqs:*"], "Resource": "*"}
READER = {"Effect": "Allow", "Action": ["dynamodb:GetItem", "sqs:ReceiveMessage"], "Resource": "*"}
# Made up by moto per call, or the clock's: not part of what the two paths must agree on.
VARYING = {
    "RequestId",
    "HTTPHeaders",
    "MessageId",
    "ReceiptHandle",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "SequenceNumber",
}


@pytest.fixture
def moto() -> Iterator[aws.Moto]:
    iam = Iam(region=DIRECT, account=ACCOUNT)
    iam.add("ASIAWRITER", Principal("writer", "WriterRole", (WRITER,)))
    iam.add("ASIAREADER", Principal("reader", "ReaderRole", (READER,)))
    moto = aws.Moto(iam=iam)
    moto.start()
    for region in (DIRECT, FULL):
        create_table(session("AKIAADMIN", region).client("dynamodb", endpoint_url=moto.url), TABLE)
        sqs = session("AKIAADMIN", region).client("sqs", endpoint_url=moto.url)
        sqs.create_queue(QueueName="plain")
        sqs.create_queue(QueueName="frames.fifo", Attributes={"FifoQueue": "true"})
    yield moto
    for region in (DIRECT, FULL):  # moto's backends outlive this moto: leave them as found
        session("AKIAADMIN", region).client("dynamodb", endpoint_url=moto.url).delete_table(TableName=TABLE)
        sqs = session("AKIAADMIN", region).client("sqs", endpoint_url=moto.url)
        for url in sqs.list_queues().get("QueueUrls", []):
            sqs.delete_queue(QueueUrl=url)
    moto.stop()


def session(access_key: str, region: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key="x", aws_session_token="x", region_name=region
    )


def clients(moto: aws.Moto, service: str, access_key: str = "ASIAWRITER", **config: Any) -> dict[str, Any]:
    """The same principal's client in each region: ``DIRECT`` as built, ``FULL`` without the hook."""
    made = {
        region: session(access_key, region).client(service, endpoint_url=moto.url, config=Config(**config))
        for region in (DIRECT, FULL)
    }
    made[FULL].meta.events.unregister("before-call", aws._before_call)
    return made


def stable(value: Any) -> Any:
    """``value`` without what varies per call; region names in ARNs and URLs made alike."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [stable(v) for v in value]
    if isinstance(value, str):
        return value.replace(FULL, DIRECT)
    return value


def outcome(call: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return "ok", stable(call(**kwargs))
    except ClientError as exc:
        return type(exc).__name__, str(exc), stable(exc.response)


def both(made: dict[str, Any], operation: str, **kwargs: Any) -> Any:
    """Run one call on both paths and return their (equal) outcome."""
    answers = {region: outcome(getattr(client, operation), **kwargs) for region, client in made.items()}
    assert answers[DIRECT] == answers[FULL], operation
    return answers[DIRECT]


def s(value: str) -> dict[str, str]:
    return {"S": value}


def item(pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    return {"pk": s(pk), "sk": s(sk), **extra}


def test_dynamodb_answers_alike_on_both_paths(moto: aws.Moto) -> None:
    seen: list[tuple[str, str, int, Any]] = []  # the direct call's, then the full path's, call by call

    def observe(call: aws.AwsCall) -> None:
        request = json.loads(call.request)
        request.pop("ClientRequestToken", None)  # botocore makes one up per transaction
        seen.append((call.service, call.operation, call.status, request))

    moto.observers.append(observe)
    ddb = clients(moto, "dynamodb")
    n = {"N": "1"}
    blob = {"B": b"\x00\xffbinary"}
    absent = {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": "pk"}}
    assert both(ddb, "put_item", TableName=TABLE, Item=item("a", "1", n=n, b=blob), **absent)[0] == "ok"
    failed = both(
        ddb, "put_item", TableName=TABLE, Item=item("a", "1"), ReturnValuesOnConditionCheckFailure="ALL_OLD", **absent
    )
    assert failed[2]["Error"]["Code"] == "ConditionalCheckFailedException"
    assert failed[2]["Item"]["b"] == blob  # a modeled error field, parsed to bytes
    found = both(ddb, "get_item", TableName=TABLE, Key=item("a", "1"), ConsistentRead=True)
    assert found[1]["Item"]["b"] == blob and found[1]["ResponseMetadata"] == {"HTTPStatusCode": 200, "RetryAttempts": 0}
    both(
        ddb,
        "get_item",
        TableName=TABLE,
        Key=item("a", "1"),
        ProjectionExpression="#n",
        ExpressionAttributeNames={"#n": "n"},
    )
    both(ddb, "get_item", TableName=TABLE, Key=item("missing", "1"))
    update = {
        "TableName": TABLE,
        "Key": item("a", "#stats"),
        "UpdateExpression": "ADD #n :one SET #t = :now",
        "ConditionExpression": "attribute_not_exists(#n) OR #n < :max",
        "ExpressionAttributeNames": {"#n": "n", "#t": "t"},
        "ExpressionAttributeValues": {":one": n, ":now": {"N": "5"}, ":max": {"N": "2"}},
        "ReturnValues": "ALL_NEW",
    }
    for _ in range(3):  # 1, 2, then the condition fails
        both(ddb, "update_item", **update)
    both(ddb, "update_item", **{**update, "UpdateExpression": "ADD #n"})  # a validation error
    transaction = [
        {"Put": {"TableName": TABLE, "Item": item("a", "2"), **absent}},
        {"Update": {**{k: v for k, v in update.items() if k != "ReturnValues"}, "ConditionExpression": "#n > :max"}},
    ]
    cancelled = both(ddb, "transact_write_items", TransactItems=transaction)
    assert cancelled[2]["Error"]["Code"] == "TransactionCanceledException" and cancelled[2]["CancellationReasons"]
    transaction[1]["Update"]["ConditionExpression"] = "#n >= :max"
    assert both(ddb, "transact_write_items", TransactItems=transaction)[0] == "ok"
    puts = [{"PutRequest": {"Item": item("b", str(i), b={"B": bytes([i])})}} for i in range(3)]
    both(ddb, "batch_write_item", RequestItems={TABLE: puts})
    keys = [item("b", str(i)) for i in range(3)]
    read = both(ddb, "batch_get_item", RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}})
    assert sorted(i["b"]["B"] for i in read[1]["Responses"][TABLE]) == [b"\x00", b"\x01", b"\x02"]
    query = {
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :p)",
        "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
    }
    both(ddb, "query", TableName=TABLE, **query, ExpressionAttributeValues={":pk": s("b"), ":p": s("1")})
    both(ddb, "query", TableName=TABLE, **query, ExpressionAttributeValues={":pk": s("a"), ":p": s("")}, Limit=1)
    both(ddb, "delete_item", TableName=TABLE, Key=item("b", "0"), ReturnValues="ALL_OLD")
    both(ddb, "get_item", TableName="no-such-table", Key=item("a", "1"))
    denied = both(clients(moto, "dynamodb", "ASIAREADER"), "put_item", TableName=TABLE, Item=item("c", "1"))
    assert denied[2]["Error"]["Code"] == "AccessDeniedException"
    # The gate's observers (the meter) saw the same calls with the same request bodies on both paths.
    assert len(seen) == 2 * 17 and seen[0::2] == seen[1::2]  # 17 calls reached DynamoDB (not the denied one)


def test_sqs_answers_alike_on_both_paths(moto: aws.Moto) -> None:
    sqs = clients(moto, "sqs")
    urls = {region: client.get_queue_url(QueueName="frames.fifo")["QueueUrl"] for region, client in sqs.items()}
    assert urls[DIRECT] == urls[FULL]  # one moto, one URL: the region comes from the credential scope
    url = urls[DIRECT]
    both(sqs, "send_message", QueueUrl=url, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="1")
    entries = [
        {"Id": str(i), "MessageBody": f"m{i}", "MessageGroupId": f"g{i % 2}", "MessageDeduplicationId": f"b{i}"}
        for i in range(4)
    ]
    both(sqs, "send_message_batch", QueueUrl=url, Entries=entries)
    both(sqs, "send_message", QueueUrl=url, MessageBody="no group")  # a validation error
    received = {
        region: client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        )
        for region, client in sqs.items()
    }
    assert stable(received[DIRECT]) == stable(received[FULL]) and received[DIRECT]["Messages"]
    for region, client in sqs.items():
        handles = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received[region]["Messages"])
        ]
        handles.append({"Id": "bad", "ReceiptHandle": "not-a-handle"})
        answer = client.delete_message_batch(QueueUrl=url, Entries=handles)
        received[region] = stable(answer)
    assert received[DIRECT] == received[FULL]
    both(sqs, "get_queue_attributes", QueueUrl=url, AttributeNames=["All"])
    both(sqs, "receive_message", QueueUrl=url.replace("frames.fifo", "no-such-queue"))
    denied = both(clients(moto, "sqs", "ASIAREADER"), "send_message", QueueUrl=url, MessageBody="x")
    assert denied[2]["Error"]["Code"] == "AccessDenied"


def test_the_client_retry_policy_decides_on_both_paths(moto: aws.Moto) -> None:
    """The direct path runs botocore's retry loop: a ``needs-retry`` handler asking for one retry (as the
    client's policy does for a throttled answer) has the call made twice, and the answer says so."""
    ddb = clients(moto, "dynamodb", retries={"mode": "standard", "max_attempts": 3})
    asked: dict[str, list[int]] = {DIRECT: [], FULL: []}
    for region, client in ddb.items():

        def once(attempts: int, region: str = region, **_kwargs: Any) -> float | None:
            asked[region].append(attempts)
            return 0.0 if attempts == 1 else None

        client.meta.events.register("needs-retry.dynamodb.UpdateItem", once)
    update = {
        "TableName": TABLE,
        "Key": item("r", "1"),
        "UpdateExpression": "ADD #n :one",
        "ExpressionAttributeNames": {"#n": "n"},
        "ExpressionAttributeValues": {":one": {"N": "1"}},
        "ReturnValues": "ALL_NEW",
    }
    answer = both(ddb, "update_item", **update)
    assert answer[1]["Attributes"]["n"] == {"N": "2"} and answer[1]["ResponseMetadata"]["RetryAttempts"] == 1
    assert asked[DIRECT] == asked[FULL] == [1, 2]
    assert moto.requests["UpdateItem"] == 4


def test_a_call_the_hook_cannot_hand_over_takes_the_full_path(moto: aws.Moto) -> None:
    """Adaptive retries rate-limit at ``before-send``: such a client's calls are signed and sent as before
    (and still reach moto in-process)."""
    ddb = clients(moto, "dynamodb", retries={"mode": "adaptive"})
    signed: list[bytes] = []
    ddb[DIRECT].meta.events.register(
        "before-send", lambda request, **_: signed.append(request.headers["Authorization"])
    )
    both(ddb, "get_item", TableName=TABLE, Key=item("a", "1"))
    assert len(signed) == 1 and b"Signature=" in signed[0]
