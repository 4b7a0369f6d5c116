"""The API Gateway WebSocket API that pusher-js talks to: routes, the cheap ping route, the stage.

Routes are selected on ``$request.body.event``, the field every Pusher frame has. ``$connect``,
``$disconnect`` and ``$default`` go to Lambda; ``pusher:ping`` — which every idle pusher-js client sends
every 120 s, the single most frequent frame of a quiet app — is answered by API Gateway itself with a MOCK
integration whose response template is the ``pusher:pong`` frame: no Lambda invocation, no store access.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.components.access_logs import access_logs as access_log_settings
from cdk.components.functions import retention
from shared.protocol import frames

ROUTE_SELECTION = "$request.body.event"
PING_ROUTE_KEY = "pusher:ping"
# The engine's own pong, byte for byte (what the local server and the Lambda path answer).
PONG_FRAME = frames.PONG.decode()
# API Gateway's own variables, one JSON object per connect/message/disconnect.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTimeEpoch",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "connectionId": "$context.connectionId",
        "ip": "$context.identity.sourceIp",
        "status": "$context.status",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
        "error": "$context.error.message",
        "integrationError": "$context.integration.error",
    },
    separators=(",", ":"),
)


class WebSocketGateway(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        connect: lambda_.IFunction,
        disconnect: lambda_.IFunction,
        message: lambda_.IFunction,
        stage_name: str,
        default_integration: apigwv2.WebSocketRouteIntegration | None = None,
        ping_route: str,
        throttle_rate: int,
        throttle_burst: int,
        log_retention_days: int,
        access_logs: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            api_name=f"{cdk.Stack.of(self).stack_name}-websocket",
            description="sockless: Pusher Channels protocol 7 over API Gateway WebSocket",
            route_selection_expression=ROUTE_SELECTION,
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("Connect", connect)
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("Disconnect", disconnect)
            ),
            # The ordered frames queue (cdk/components/frames.py) when given, else the function directly.
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=default_integration or integrations.WebSocketLambdaIntegration("Message", message)
            ),
        )
        if ping_route == "mock":
            self._add_mock_ping_route()
        self.access_log_group: logs.LogGroup | None = None
        if access_logs:
            self.access_log_group = logs.LogGroup(
                self, "AccessLogs", retention=retention(log_retention_days), removal_policy=cdk.RemovalPolicy.DESTROY
            )
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=stage_name,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
            access_log_settings=access_log_settings(self.access_log_group, ACCESS_LOG_FORMAT)
            if self.access_log_group is not None
            else None,
        )

    def _add_mock_ping_route(self) -> None:
        """``pusher:ping`` → ``pusher:pong`` inside API Gateway: a two-way route (route response
        ``$default``) on a MOCK integration whose integration response template is the pong frame."""
        api_id = self.api.api_id
        integration = apigwv2.CfnIntegration(
            self,
            "PingIntegration",
            api_id=api_id,
            integration_type="MOCK",
            description="answers pusher:ping with pusher:pong without invoking Lambda",
            # A MOCK integration's "backend" is its request template: the status code it returns.
            request_templates={"$default": '{"statusCode": 200}'},
            template_selection_expression="\\$default",
            passthrough_behavior="WHEN_NO_MATCH",
        )
        apigwv2.CfnIntegrationResponse(
            self,
            "PingIntegrationResponse",
            api_id=api_id,
            integration_id=integration.ref,
            integration_response_key="$default",
            response_templates={"$default": PONG_FRAME},
            template_selection_expression="\\$default",
        )
        route = apigwv2.CfnRoute(
            self,
            "PingRoute",
            api_id=api_id,
            route_key=PING_ROUTE_KEY,
            route_response_selection_expression="$default",
            target=f"integrations/{integration.ref}",
        )
        apigwv2.CfnRouteResponse(
            self, "PingRouteResponse", api_id=api_id, route_id=route.ref, route_response_key="$default"
        )

    @property
    def host(self) -> str:
        return f"{self.api.api_id}.execute-api.{cdk.Stack.of(self).region}.{cdk.Stack.of(self).url_suffix}"

    @property
    def management_endpoint_url(self) -> str:
        """Where the handlers post frames: execute-api itself, never the CloudFront host (posting to
        @connections through CloudFront fails, aws/aws-sdk-js-v3#1830)."""
        return f"https://{self.host}/{self.stage.stage_name}"

    def grant_manage_connections(self, grantee: iam.IGrantable) -> None:
        """``execute-api:ManageConnections`` on this API's stage's ``@connections`` only."""
        self.stage.grant_management_api_access(grantee)
