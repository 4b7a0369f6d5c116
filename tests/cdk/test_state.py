"""The store: the DynamoDB table the DynamoDB driver expects, or ElastiCache Serverless Valkey in a VPC."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk.config import ConfigError
from cdk.stack import FUNCTIONS
from shared.store.dynamodb import create_table
from tests.cdk.conftest import Synth, render, synthesize


def _table(synth: Synth) -> dict[str, Any]:
    _, table = synth.one("AWS::DynamoDB::GlobalTable")
    return dict(table["Properties"])


def test_dynamodb_table_is_on_demand_with_ttl_and_point_in_time_recovery(dynamodb: Synth) -> None:
    table = _table(dynamodb)
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    [replica] = table["Replicas"]
    assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_dynamodb_table_has_the_key_schema_the_driver_creates(dynamodb: Synth) -> None:
    """``shared.store.dynamodb.create_table`` is how the driver's tests and the emulator make the table: the
    deployed one must have the same keys and no index the driver does not know about."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "reference")
        reference = client.describe_table(TableName="reference")["Table"]
        ttl = client.describe_time_to_live(TableName="reference")["TimeToLiveDescription"]
    deployed = _table(dynamodb)
    assert deployed["KeySchema"] == reference["KeySchema"]
    assert sorted(deployed["AttributeDefinitions"], key=str) == sorted(reference["AttributeDefinitions"], key=str)
    assert deployed.get("GlobalSecondaryIndexes", []) == reference.get("GlobalSecondaryIndexes", []) == []
    assert deployed["TimeToLiveSpecification"]["AttributeName"] == ttl["AttributeName"]


def test_the_dynamodb_variant_has_no_vpc_and_no_cache(dynamodb: Synth) -> None:
    assert not dynamodb.of_type("AWS::EC2::VPC")
    assert not dynamodb.of_type("AWS::ElastiCache::ServerlessCache")
    for spec in FUNCTIONS.values():
        assert "VpcConfig" not in dynamodb.function(spec.handler)[1]["Properties"]


def test_valkey_variant_runs_a_serverless_valkey_cache_in_private_subnets(valkey: Synth) -> None:
    assert not valkey.of_type("AWS::DynamoDB::GlobalTable")
    _, cache = valkey.one("AWS::ElastiCache::ServerlessCache")
    props = cache["Properties"]
    assert props["Engine"] == "valkey"
    assert props["MajorEngineVersion"] == "8"
    private = {
        k for k, v in valkey.of_type("AWS::EC2::Subnet").items() if v["Properties"]["MapPublicIpOnLaunch"] is False
    }
    assert {s["Ref"] for s in props["SubnetIds"]} == private
    assert len(private) == 2


def test_only_the_functions_security_group_reaches_valkey(valkey: Synth) -> None:
    _, cache = valkey.one("AWS::ElastiCache::ServerlessCache")
    [group] = cache["Properties"]["SecurityGroupIds"]
    cache_group = group["Fn::GetAtt"][0]
    ingress = [
        r["Properties"]
        for r in valkey.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [cache_group, "GroupId"]}
    ]
    assert sorted(i["FromPort"] for i in ingress) == [6379, 6380]
    function_groups = {
        json_group["Fn::GetAtt"][0]
        for spec in FUNCTIONS.values()
        for json_group in valkey.function(spec.handler)[1]["Properties"]["VpcConfig"]["SecurityGroupIds"]
    }
    assert len(function_groups) == 1
    assert {i["SourceSecurityGroupId"]["Fn::GetAtt"][0] for i in ingress} == function_groups
    assert "SecurityGroupIngress" not in valkey.resources[cache_group]["Properties"]


def test_valkey_functions_run_in_the_private_subnets_with_the_redis_driver(valkey: Synth) -> None:
    _, cache = valkey.one("AWS::ElastiCache::ServerlessCache")
    for spec in FUNCTIONS.values():
        props = valkey.function(spec.handler)[1]["Properties"]
        assert {s["Ref"] for s in props["VpcConfig"]["SubnetIds"]} == {
            s["Ref"] for s in cache["Properties"]["SubnetIds"]
        }
        env = props["Environment"]["Variables"]
        assert env["SOCKLESS_STORE__DRIVER"] == "redis"
        cache_id = next(iter(valkey.of_type("AWS::ElastiCache::ServerlessCache")))
        assert (
            render(env["SOCKLESS_STORE__URL"]) == f"rediss://<{cache_id}.Endpoint.Address>:<{cache_id}.Endpoint.Port>"
        )


def test_valkey_variant_reaches_the_management_api_on_its_public_host_through_the_nat(valkey: Synth) -> None:
    """An execute-api interface endpoint (private DNS on by default) would make the public WebSocket API's
    @connections answer 403 from inside the VPC (#14 defect 5): there is none, and every function sits in
    subnets whose default route is the NAT gateway."""
    for endpoint in valkey.of_type("AWS::EC2::VPCEndpoint").values():
        assert "execute-api" not in render(endpoint["Properties"]["ServiceName"])
    [nat_id] = valkey.of_type("AWS::EC2::NatGateway")
    nat_subnets = {
        render(association["Properties"]["SubnetId"])
        for association in valkey.of_type("AWS::EC2::SubnetRouteTableAssociation").values()
        for route in valkey.of_type("AWS::EC2::Route").values()
        if route["Properties"].get("NatGatewayId") == {"Ref": nat_id}
        and route["Properties"]["RouteTableId"] == association["Properties"]["RouteTableId"]
    }
    for spec in FUNCTIONS.values():
        _, function = valkey.function(spec.handler)
        subnets = {render(s) for s in function["Properties"]["VpcConfig"]["SubnetIds"]}
        assert subnets and subnets <= nat_subnets, spec.handler


def test_valkey_variant_has_one_nat_gateway_for_sqs_lambda_and_webhook_urls(valkey: Synth) -> None:
    assert len(valkey.of_type("AWS::EC2::NatGateway")) == 1
    valkey.template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_the_removed_execute_api_endpoint_option_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="cannot reach the public WebSocket API"):
        synthesize({"store": "valkey", "execute_api_endpoint": "true"})


def test_the_valkey_bundle_differs_from_the_dynamodb_bundle(dynamodb: Synth, valkey: Synth) -> None:
    """The Valkey variant bundles the redis client; the DynamoDB variant must not carry it."""
    handler = FUNCTIONS["connect"].handler
    assert dynamodb.function(handler)[1]["Properties"]["Code"] != valkey.function(handler)[1]["Properties"]["Code"]
