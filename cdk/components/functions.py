"""One sockless Lambda function: its own role (no AWS-managed policies), log group with retention, arm64.

Each function gets a role of its own so the stack can grant exactly what that function uses; the role starts
with nothing but writing to its own log group (and, inside a VPC, the network-interface actions Lambda
needs). Grants are made by the stack, where the wiring between concerns is visible in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

# Keep in step with cdk.config.LOG_RETENTION_DAYS (a test checks they match).
RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch retention for ``days``; only the values CloudWatch accepts are allowed."""
    try:
        return RETENTION[days]
    except KeyError:
        raise ValueError(f"log retention must be one of {sorted(RETENTION)} days, not {days}") from None


@dataclass(frozen=True)
class AsyncInvoke:
    """How Lambda's asynchronous queue treats an event for this function (InvocationType=Event).

    ``retries`` counts retries after a function error (0-2); throttled events (429) are retried by Lambda
    with backoff for up to ``max_age`` whatever ``retries`` says; an event that runs out of either goes to
    ``on_failure`` and counts in ``AsyncEventsDropped`` (AWS Lambda developer guide, "How Lambda handles
    errors and retries with asynchronous invocation")."""

    retries: int
    max_age: cdk.Duration
    on_failure: sqs.IQueue


@dataclass(frozen=True)
class Placement:
    """Where a function runs when the store lives in a VPC (the Valkey variant)."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


class SocklessFunction(Construct):
    """A handler of the shared bundle, with its role and log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        memory_mb: int,
        timeout: cdk.Duration,
        environment: Mapping[str, str],
        log_retention_days: int,
        quiet_platform_logs: bool = False,
        placement: Placement | None = None,
        reserved_concurrency: int | None = None,
        async_invoke: AsyncInvoke | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(log_retention_days),
            # Operational logs only (no customer payloads are logged): nothing to keep after a teardown.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"sockless {construct_id}: {description}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        if placement is not None:
            # Lambda creates and deletes the function's network interfaces with the function's own role;
            # these EC2 actions have no resource-level scoping (see the cdk-nag acknowledgement).
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler=handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            description=description,
            memory_size=memory_mb,
            timeout=timeout,
            environment=dict(environment),
            role=self.role,
            log_group=self.log_group,
            # JSON platform logs at WARN drop Lambda's START/END/REPORT lines (~400 bytes an invocation, billed
            # as CloudWatch Logs ingestion: docs/cost.md); errors and timeouts are still logged.
            logging_format=lambda_.LoggingFormat.JSON if quiet_platform_logs else None,
            system_log_level_v2=lambda_.SystemLogLevel.WARN if quiet_platform_logs else None,
            reserved_concurrent_executions=reserved_concurrency,
            retry_attempts=async_invoke.retries if async_invoke else None,
            max_event_age=async_invoke.max_age if async_invoke else None,
            on_failure=destinations.SqsDestination(async_invoke.on_failure) if async_invoke else None,
            vpc=placement.vpc if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            security_groups=[placement.security_group] if placement else None,
        )

    def add_environment(self, name: str, value: str) -> None:
        self.function.add_environment(name, value)
