"""The API Gateway HTTP API behind ``/apps/*``: the Pusher REST API (server SDKs publish here).

An HTTP API (not a REST API) because it is a third of the price per request and the handler verifies the
Pusher request signature itself; every path goes to the one handler (the Powertools resolver routes).
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.components.access_logs import access_logs as access_log_settings
from cdk.components.functions import retention

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTimeEpoch",
        "ip": "$context.identity.sourceIp",
        "method": "$context.httpMethod",
        "path": "$context.path",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
    },
    separators=(",", ":"),
)


class RestGateway(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        throttle_rate: int,
        throttle_burst: int,
        log_retention_days: int,
        access_logs: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{cdk.Stack.of(self).stack_name}-rest",
            description="sockless: the Pusher Channels HTTP API (/apps/{app_id}/...)",
            create_default_stage=False,
            default_integration=integrations.HttpLambdaIntegration(
                "Rest", handler, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
            ),
        )
        self.access_log_group: logs.LogGroup | None = None
        if access_logs:
            self.access_log_group = logs.LogGroup(
                self, "AccessLogs", retention=retention(log_retention_days), removal_policy=cdk.RemovalPolicy.DESTROY
            )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
            access_log_settings=access_log_settings(self.access_log_group, ACCESS_LOG_FORMAT)
            if self.access_log_group is not None
            else None,
        )

    @property
    def host(self) -> str:
        return f"{self.api.api_id}.execute-api.{cdk.Stack.of(self).region}.{cdk.Stack.of(self).url_suffix}"
