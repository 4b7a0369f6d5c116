"""The VPC of the Valkey variant: private subnets for the functions and the cache, and the ways out.

Functions in a VPC lose the direct internet path that the DynamoDB variant never has to think about, but
they still have to reach: the API Gateway management API (every frame sent to a client), SQS (webhook
events), Lambda (welcome and fan-out invocations), Secrets Manager (app secrets) and customers' webhook
URLs (the webhooks worker). One NAT gateway covers all of it.

There is no execute-api interface endpoint: it would not carry the management API. An execute-api VPC
endpoint routes only to private APIs, which are REST APIs only, and with private DNS on it takes over every
``*.execute-api.<region>.amazonaws.com`` name in the VPC, so the public WebSocket API's ``@connections``
answers 403 from inside the VPC (API Gateway developer guide, "Private REST APIs in API Gateway": "If you
turn on private DNS, you can't access the default endpoint for public APIs"; AWS knowledge center,
"api-gateway-vpc-connections"). With private DNS off the endpoint would carry nothing of ours at all. So
the management API is reached on its public host through the NAT gateway (#14 defect 5).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.components.functions import Placement, retention


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, log_retention_days: int) -> None:
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

    @property
    def private_subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids

    @property
    def placement(self) -> Placement:
        return Placement(vpc=self.vpc, subnets=self.private_subnets, security_group=self.functions_security_group)
