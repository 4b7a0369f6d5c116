"""CPU per request of the emulator's moto, one thread: the store's kinds of DynamoDB and SQS calls, through the
same gate (IAM enforced, the billing meter observing) as in ``make emulate``.

Each operation runs in batches of ``--batch`` calls, alternately on a client as the emulator builds them
(the call handed over at botocore's ``before-call``, ``local_server/emulator/moto_calls.py``) and on one
with that hook off (signed, through botocore's send loop, handed over at ``before-send``); the figure per
path is the first quartile of its batches (the machine's other load only adds); each path has a FIFO
queue of its own, so both receive what they sent. Run:
``.venv/bin/python -m bench.emulator_requests [--rounds 12] [--batch 25]``. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from cost.meter import Meter
from local_server.emulator import aws, metering, moto_fifo
from local_server.emulator.iam import Iam, Principal
from local_server.emulator.lambdas import LambdaService
from shared.dynamodb.table import create_table

KEY = "ASIABENCH"
GRANT = {"Effect": "Allow", "Action": ["dynamodb:*", "sqs:*"], "Resource": "*"}


def operations(ddb: Any, sqs: Any, queue: str) -> dict[str, Callable[[int], Any]]:
    def k(i: int, sk: str = "conn") -> dict[str, Any]:
        return {"pk": {"S": f"app#1#sock#{i}"}, "sk": {"S": sk}}

    def receive_and_delete(_i: int) -> None:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got.get("Messages", []))]
        if entries:
            sqs.delete_message_batch(QueueUrl=queue, Entries=entries)

    counter = {"pk": {"S": "app#1"}, "sk": {"S": "#connections"}}
    names = {"#n": "n", "#t": "t", "#pk": "pk"}
    return {
        "PutItem, conditional": lambda i: ddb.put_item(
            TableName="t",
            Item={**k(i), "sid": {"S": f"{i}.{i}"}, "at": {"N": "1700000000.5"}},
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": "pk"},
        ),
        "GetItem": lambda i: ddb.get_item(TableName="t", Key=k(i), ConsistentRead=True),
        "UpdateItem, ADD + condition": lambda i: ddb.update_item(
            TableName="t",
            Key=counter,
            UpdateExpression="ADD #n :one",
            ConditionExpression="attribute_not_exists(#n) OR #n < :max",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":max": {"N": "10000000"}},
        ),
        "TransactWriteItems, 2 puts + update": lambda i: ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": "t",
                        "Item": k(i, "c#crowd"),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": "pk"},
                    }
                },
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "ch#crowd"}, "sk": {"S": f"s#{i}"}}}},
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "ch#crowd"}, "sk": {"S": "#stats"}},
                        "UpdateExpression": "ADD #n :one SET #t = :now",
                        "ExpressionAttributeNames": names,
                        "ConditionExpression": "attribute_not_exists(#pk) OR #n >= :zero",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":now": {"N": "5"}, ":zero": {"N": "0"}},
                    }
                },
            ]
        ),
        "BatchWriteItem, 2 puts": lambda i: ddb.batch_write_item(
            RequestItems={"t": [{"PutRequest": {"Item": k(i, f"w#{n}")}} for n in range(2)]}
        ),
        "Query, one partition": lambda i: ddb.query(
            TableName="t",
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "pk"},
            ExpressionAttributeValues={":pk": {"S": f"app#1#sock#{i}"}},
        ),
        "SendMessage, FIFO": lambda i: sqs.send_message(
            QueueUrl=queue, MessageBody=json.dumps({"n": i}), MessageGroupId=f"g{i}", MessageDeduplicationId=f"{i}"
        ),
        "ReceiveMessage (10) + DeleteMessageBatch": receive_and_delete,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    aws.use_fake_credentials()
    aws.share_botocore_data()
    moto_fifo.install()
    iam = Iam(region=aws.REGION, account="123456789012")
    iam.add(KEY, Principal("bench", "BenchRole", (GRANT,)))
    moto = aws.Moto(iam=iam)
    url = moto.start()
    detach = metering.attach(Meter(), LambdaService(region=aws.REGION, concurrency=1), moto)
    try:
        create_table(aws.client("dynamodb", url), "t")
        admin = aws.client("sqs", url)
        session = boto3.session.Session(
            aws_access_key_id=KEY, aws_secret_access_key="x", aws_session_token="x", region_name=aws.REGION
        )
        config = Config(retries={"mode": "standard", "max_attempts": 4})
        paths = {}
        for path in ("before-call", "before-send"):
            ddb, sqs = (session.client(s, endpoint_url=url, config=config) for s in ("dynamodb", "sqs"))
            if path == "before-send":
                for client in (ddb, sqs):
                    client.meta.events.unregister("before-call", aws._before_call)
            fifo = {"FifoQueue": "true"}
            queue = admin.create_queue(QueueName=f"{path}.fifo", Attributes=fifo)["QueueUrl"]  # one queue a path
            paths[path] = operations(ddb, sqs, queue)
        spent: dict[tuple[str, str], list[float]] = {}
        calls = 0
        for _ in range(args.rounds):
            for name in paths["before-call"]:
                for path, ops in paths.items():
                    started = time.thread_time()
                    for i in range(calls, calls + args.batch):
                        ops[name](i)
                    spent.setdefault((name, path), []).append((time.thread_time() - started) / args.batch)
                    calls += args.batch
    finally:
        detach()
        moto.stop()

    def quartile(name: str, path: str) -> float:
        values = sorted(spent[(name, path)])
        return 1e6 * values[len(values) // 4]

    print(f"{'operation':42} {'before-call µs':>15} {'before-send µs':>15} {'ratio':>6}")
    totals = [0.0, 0.0]
    for name in paths["before-call"]:
        hooked, sent = quartile(name, "before-call"), quartile(name, "before-send")
        totals = [totals[0] + hooked, totals[1] + sent]
        print(f"{name:42} {hooked:15.0f} {sent:15.0f} {hooked / sent:6.2f}")
    print(f"{'sum':42} {totals[0]:15.0f} {totals[1]:15.0f} {totals[0] / totals[1]:6.2f}")


if __name__ == "__main__":
    main()
