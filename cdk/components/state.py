"""Where connection, subscription and presence state lives: DynamoDB (default) or ElastiCache Serverless Valkey.

Both expose the same two things to the stack: the ``SOCKLESS_STORE__*`` environment the handlers read, and
a ``grant(principal)`` for what the handlers do with it. The stack never needs to know which one it has.
"""

from __future__ import annotations

from typing import Protocol

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.components.network import Network

# The calls DynamoDBChannelStore makes (single items, conditional/atomic updates, queries by partition,
# batched deletes, transactions). TransactWriteItems has no IAM action of its own: AWS authorizes each item
# of a transaction as its own action, Put/Update/Delete as PutItem/UpdateItem/DeleteItem and ConditionCheck
# as dynamodb:ConditionCheckItem (Amazon DynamoDB developer guide, "Using IAM with DynamoDB transactions");
# the store's transactions hold no ConditionCheck, so that action is not granted. tests/cdk/test_iam_actions.py
# finds every operation in the code and checks it is here, and that nothing here goes unused. No Scan, no
# table administration.
DYNAMODB_DATA_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Query",
)
VALKEY_PORTS = (6379, 6380)  # 6380: the serverless cache's reader endpoint (reads from replicas)


class Store(Protocol):
    @property
    def environment(self) -> dict[str, str]: ...

    def grant(self, grantee: iam.IGrantable) -> None: ...


class DynamoDbStore(Construct):
    """One on-demand table: ``pk``/``sk`` strings, TTL on ``ttl``, point-in-time recovery.

    On-demand because sockless traffic is spiky (connect storms after a deploy or an outage) and idle
    most of the day; TTL removes connections whose ``$disconnect`` never came (API Gateway does not
    guarantee it) without a scan.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute="ttl",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Live connection state only: it is rebuilt by clients reconnecting, so a teardown may drop it.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

    @property
    def environment(self) -> dict[str, str]:
        return {"SOCKLESS_STORE__DRIVER": "dynamodb", "SOCKLESS_STORE__TABLE_NAME": self.table.table_name}

    def grant(self, grantee: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(
            grantee=grantee, actions=list(DYNAMODB_DATA_ACTIONS), resource_arns=[self.table.table_arn]
        )


class ValkeyStore(Construct):
    """ElastiCache Serverless for Valkey in the private subnets of ``network``.

    Serverless because it scales without node sizing and costs nothing to plan; Valkey because it is the
    Redis-compatible engine ElastiCache prices lowest. TLS is always on for serverless caches, hence
    ``rediss://``. Only the functions' security group may connect.
    """

    def __init__(self, scope: Construct, construct_id: str, *, network: Network, name: str) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="sockless Valkey: reachable from the sockless functions only",
            allow_all_outbound=False,
        )
        for port in VALKEY_PORTS:
            self.security_group.add_ingress_rule(
                network.functions_security_group, ec2.Port.tcp(port), f"sockless functions to Valkey ({port})"
            )
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=name,
            description="sockless connection, channel and presence state",
            subnet_ids=network.private_subnet_ids,
            security_group_ids=[self.security_group.security_group_id],
            daily_snapshot_time="04:00",
            snapshot_retention_limit=1,
        )

    @property
    def url(self) -> str:
        return f"rediss://{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}"

    @property
    def environment(self) -> dict[str, str]:
        # ElastiCache Serverless runs cluster mode enabled only (its endpoint speaks the cluster protocol):
        # the functions need a cluster client (#14 defect 6; AWS re:Post, "ElastiCache Serverless only
        # supports Redis Cluster Mode Enabled"). Every app's keys share one hash slot (shared/redis/keys.py).
        return {
            "SOCKLESS_STORE__DRIVER": "redis",
            "SOCKLESS_STORE__URL": self.url,
            "SOCKLESS_STORE__CLUSTER_MODE": "true",
        }

    def grant(self, grantee: iam.IGrantable) -> None:
        """Access is by network (security group), not IAM: the serverless cache's default user has no
        password, and only the functions' security group can reach it."""
