"""CloudFront in front of both APIs: one host for pusher-js and the server SDKs, like Pusher's.

``/app/{key}`` (everything but ``/apps/*``) goes to the WebSocket API through the CloudFront Function in
``cdk/cloudfront/rewrite.js``, which turns pusher-js's path into the stage root plus ``?app_key=``;
``/apps/*`` goes unchanged to the HTTP API, so request signatures over ``/apps/...`` still verify.
Nothing is cached: every request is a WebSocket upgrade or a signed API call.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from constructs import Construct

from cdk.components.naming import physical_name

REWRITE_SOURCE = Path(__file__).resolve().parents[1] / "cloudfront" / "rewrite.js"
STAGE_PLACEHOLDER = "var STAGE_PATH = '/prod';"
# CloudFront's hard limit on a function's code.
MAX_FUNCTION_BYTES = 10 * 1024
# A CloudFront Function's name: at most 64 of [A-Za-z0-9-_], unique in the account across regions. The
# region (at most 14 characters, e.g. ap-southeast-4) and a dash come first.
MAX_FUNCTION_NAME = 64
REGION_ROOM = 15


def rewrite_function_name(stack_name: str) -> str:
    """``{region}-{stack name}-rewrite``: distinct for every stack name and region (cdk/components/naming.py)."""
    return f"{cdk.Aws.REGION}-{physical_name(stack_name, 'rewrite', limit=MAX_FUNCTION_NAME - REGION_ROOM)}"


def rewrite_code(stage_name: str) -> str:
    """The function's source with the stage path filled in."""
    source = REWRITE_SOURCE.read_text(encoding="utf-8")
    if source.count(STAGE_PLACEHOLDER) != 1:
        raise ValueError(f"{REWRITE_SOURCE} must contain exactly one line {STAGE_PLACEHOLDER!r}")
    code = source.replace(STAGE_PLACEHOLDER, f"var STAGE_PATH = '/{stage_name}';")
    if len(code.encode()) > MAX_FUNCTION_BYTES:
        raise ValueError(f"{REWRITE_SOURCE} is over CloudFront's {MAX_FUNCTION_BYTES}-byte function limit")
    return code


class Edge(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        websocket_host: str,
        rest_host: str,
        stage_name: str,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rewrite = cloudfront.Function(
            self,
            "Rewrite",
            function_name=rewrite_function_name(cdk.Stack.of(self).stack_name),
            comment="sockless: /app/{key} -> WebSocket stage root with ?app_key={key}",
            code=cloudfront.FunctionCode.from_inline(rewrite_code(stage_name)),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
        )
        origin_options = {
            "protocol_policy": cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            "origin_ssl_protocols": [cloudfront.OriginSslPolicy.TLS_V1_2],
        }
        # API Gateway routes on its own host name, so the viewer's Host must not be forwarded; everything
        # else must be: the WebSocket upgrade headers, the REST API's query-string signature, content-type.
        forward_all = cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"sockless ({cdk.Stack.of(self).stack_name}): WebSocket at /app/{{key}}, REST at /apps/*",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.HttpOrigin(websocket_host, **origin_options),  # type: ignore[arg-type]
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=forward_all,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=self.rewrite, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST
                    )
                ],
            ),
            additional_behaviors={
                "/apps/*": cloudfront.BehaviorOptions(
                    origin=origins.HttpOrigin(rest_host, **origin_options),  # type: ignore[arg-type]
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    origin_request_policy=forward_all,
                ),
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_ALL,
            # A custom domain brings its own certificate and with it a TLS 1.2 floor; the default
            # *.cloudfront.net certificate only allows CloudFront's TLSv1 policy.
            domain_names=[domain_name] if domain_name else None,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
            if domain_name and certificate_arn
            else None,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if domain_name else None,
        )
        self.custom_domain = domain_name

    @property
    def host(self) -> str:
        """The public host: the custom domain when there is one (point its DNS at the distribution)."""
        return self.custom_domain or self.distribution.distribution_domain_name
