"""The one DynamoDB table sockless's drivers share: its schema, as the CDK stack creates it."""

from __future__ import annotations

from typing import Any


def create_table(client: Any, table_name: str) -> None:
    """Create the store's table as the CDK stack does (on-demand, ``pk``/``sk`` strings, TTL on ``ttl``).

    Synchronous: for tests, the emulator and scripts, with a boto3 client (moto or real).
    """
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
