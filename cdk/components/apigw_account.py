"""The account-level role API Gateway uses to write WebSocket access logs.

WebSocket (and REST) APIs write access logs with a role set once per account and region
(``AWS::ApiGateway::Account``); without it the stage fails to deploy with "CloudWatch Logs role ARN must be
set in account settings". HTTP APIs use a service-linked role instead. Accounts that already have the
role set deploy with ``-c apigw_logging_role=false`` (the setting is account-wide; this stack would
overwrite it).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from constructs import Construct


class ApiGatewayLoggingRole(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway (account-wide): write access logs to CloudWatch Logs",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
            ],
        )
        # Other APIs of the account may rely on the setting: keep the role when this stack goes.
        self.role.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        self.account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)
        self.account.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
