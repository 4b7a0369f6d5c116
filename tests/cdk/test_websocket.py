"""The WebSocket API: routes, the Lambda-free ping route, the stage's throttling and access logs."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match

from shared.protocol import frames
from tests.cdk.conftest import REPO_ROOT, Synth, synthesize


def _websocket_api(synth: Synth) -> str:
    api_id, _ = synth.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    return api_id


def _route_target(synth: Synth, route_key: str) -> tuple[str, dict[str, Any]]:
    """The integration (logical id, resource) a route of the WebSocket API sends to."""
    _, route = synth.one("AWS::ApiGatewayV2::Route", RouteKey=route_key, ApiId={"Ref": _websocket_api(synth)})
    integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
    return integration_id, dict(synth.resources[integration_id])


def test_routes_are_selected_by_the_pusher_event_field(either: Synth) -> None:
    either.template.has_resource_properties(
        "AWS::ApiGatewayV2::Api", {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.event"}
    )


def test_connect_and_disconnect_routes_invoke_their_handlers(either: Synth) -> None:
    # $default goes through the ordered frames queue (tests/cdk/test_frames.py).
    expected = {
        "$connect": "functions.connect.handler.handler",
        "$disconnect": "functions.disconnect.handler.handler",
    }
    for route_key, handler in expected.items():
        integration = _route_target(either, route_key)[1]["Properties"]
        function_id, _ = either.function(handler)
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert {"Fn::GetAtt": [function_id, "Arn"]} in integration["IntegrationUri"]["Fn::Join"][1]
        # ...and API Gateway may invoke it.
        either.template.has_resource_properties(
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
            },
        )


def test_pusher_ping_is_answered_with_the_engines_pong_by_a_mock_integration(either: Synth) -> None:
    integration_id, integration = _route_target(either, "pusher:ping")
    assert integration["Properties"]["IntegrationType"] == "MOCK"
    # A MOCK integration's request template is its "backend": a 200.
    assert json.loads(integration["Properties"]["RequestTemplates"]["$default"]) == {"statusCode": 200}
    either.template.has_resource_properties(
        "AWS::ApiGatewayV2::IntegrationResponse",
        {
            "IntegrationId": {"Ref": integration_id},
            "IntegrationResponseKey": "$default",
            "ResponseTemplates": {"$default": frames.PONG.decode()},
        },
    )
    # Two-way: without a route response API Gateway sends nothing back.
    route_id, route = either.one("AWS::ApiGatewayV2::Route", RouteKey="pusher:ping")
    assert route["Properties"]["RouteResponseSelectionExpression"] == "$default"
    either.template.has_resource_properties(
        "AWS::ApiGatewayV2::RouteResponse", {"RouteId": {"Ref": route_id}, "RouteResponseKey": "$default"}
    )


def test_the_ping_route_key_is_the_event_pusher_js_sends() -> None:
    """pusher-js pings with ``send_event('pusher:ping', {})`` → ``{"event":"pusher:ping",...}``, which route
    selection on ``$request.body.event`` maps to the route key exactly."""
    source = (REPO_ROOT / "node_modules" / "pusher-js" / "dist" / "node" / "pusher.js").read_text(encoding="utf-8")
    assert re.search(r"send_event\('pusher:ping', \{\}\)", source)


def test_ping_can_go_through_lambda_instead() -> None:
    synth = synthesize({"ping_route": "lambda"})
    assert not synth.of_type("AWS::ApiGatewayV2::IntegrationResponse")
    assert "pusher:ping" not in [
        r["Properties"]["RouteKey"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()
    ]


def test_stage_throttles_and_writes_access_logs_with_retention(either: Synth) -> None:
    api_id = _websocket_api(either)
    _, stage = either.one("AWS::ApiGatewayV2::Stage", ApiId={"Ref": api_id})
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": 1000, "ThrottlingBurstLimit": 500}
    log_group = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert either.resources[log_group]["Properties"]["RetentionInDays"] == 30
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert fields["connectionId"] == "$context.connectionId"
    assert fields["routeKey"] == "$context.routeKey"


def test_api_gateway_gets_its_logging_role_before_the_stage(dynamodb: Synth) -> None:
    """WebSocket access logs need the account's API Gateway CloudWatch role, set before the stage exists."""
    account_id, account = dynamodb.one("AWS::ApiGateway::Account")
    role = dynamodb.resources[account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    assert account["DeletionPolicy"] == "Retain"
    stage = dynamodb.one("AWS::ApiGatewayV2::Stage", StageName="prod")[1]
    assert account_id in stage["DependsOn"]


def test_an_account_that_has_the_logging_role_can_skip_it() -> None:
    synth = synthesize({"apigw_logging_role": "false"})
    assert not synth.of_type("AWS::ApiGateway::Account")


def test_stage_name_and_throttling_are_deploy_options() -> None:
    synth = synthesize({"stage_name": "live", "stage_throttle_rate": 200, "stage_throttle_burst": 100})
    synth.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "live",
            "DefaultRouteSettings": {"ThrottlingRateLimit": 200, "ThrottlingBurstLimit": 100},
        },
    )
    synth.template.has_resource_properties(
        "AWS::CloudFront::Function", {"FunctionCode": Match.string_like_regexp("var STAGE_PATH = '/live';")}
    )
