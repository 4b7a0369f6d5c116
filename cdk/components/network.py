"""The VPC of the Valkey variant: private subnets for the functions and the cache, and the ways out.

Functions in a VPC lose the direct internet path that the DynamoDB variant never has to think about, but
they still have to reach: the API Gateway management API (every frame sent to a client), SQS (webhook
events), Lambda (welcome and fan-out invocations) and customers' webhook URLs (the webhooks worker). One
NAT gateway covers all of it; the execute-api interface endpoint carries the management API — the hottest
path — privately. See docs/deploy.md for why that endpoint must be verified in a deployment, and the
``execute_api_endpoint=false`` context that removes it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.components.functions import Placement, retention


class Network(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, execute_api_endpoint: bool, log_retention_days: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
        )
        # Rejected flows only: they are what explains a function that cannot reach the cache.
        self.vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                logs.LogGroup(
                    self, "FlowLogs", retention=retention(log_retention_days), removal_policy=cdk.RemovalPolicy.DESTROY
                )
            ),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.functions_security_group = ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            description="sockless functions: outbound to Valkey, AWS APIs and webhook URLs",
            allow_all_outbound=True,
        )
        self.private_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.execute_api_endpoint: ec2.InterfaceVpcEndpoint | None = None
        if execute_api_endpoint:
            endpoint_security_group = ec2.SecurityGroup(
                self,
                "ExecuteApiSecurityGroup",
                vpc=self.vpc,
                description="sockless execute-api endpoint: HTTPS from the sockless functions only",
                allow_all_outbound=False,
            )
            endpoint_security_group.add_ingress_rule(
                self.functions_security_group, ec2.Port.tcp(443), "sockless functions to the management API"
            )
            self.execute_api_endpoint = self.vpc.add_interface_endpoint(
                "ExecuteApi",
                service=ec2.InterfaceVpcEndpointAwsService.APIGATEWAY,
                subnets=self.private_subnets,
                private_dns_enabled=True,
                security_groups=[endpoint_security_group],
                open=False,
            )

    @property
    def private_subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids

    @property
    def placement(self) -> Placement:
        return Placement(vpc=self.vpc, subnets=self.private_subnets, security_group=self.functions_security_group)
