"""API Gateway v2 access-log settings (CDK has the interface but no ready-made implementation)."""

from __future__ import annotations

import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup, log_format: str) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigw.AccessLogFormat.custom(log_format)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


def access_logs(log_group: logs.ILogGroup, log_format: str) -> apigwv2.IAccessLogSettings:
    """Access logs to ``log_group``, one line per request in ``log_format`` ($context variables)."""
    return _AccessLogSettings(log_group, log_format)
