"""cdk-nag acknowledgements: every AwsSolutions finding this design keeps, on the construct it is about.

Each acknowledgement is scoped to the construct the finding is on (never the stack or the app), names the
exact finding id (``AwsSolutions-IAM5[Resource::...]`` for wildcard findings), and says why *this* design
keeps it. A new finding anywhere else still fails the synth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from cdk.components.functions import RUNTIME
from cdk.runtimes import RUNTIMES

if TYPE_CHECKING:
    from cdk.stack import SocklessStack

LATEST_RUNTIME_REASON = (
    f"Runtime {RUNTIME.name} is chosen on purpose: AWS deprecates it on {RUNTIMES[RUNTIME.name].deprecation} "
    "(cdk/runtimes.py; the deploy-readiness test fails a runtime deprecated within a year), a newer Python "
    "runtime gains nothing this project needs, and the bundle ships .pyc compiled by that exact minor version "
    "(Lambda cannot write __pycache__), which cuts handler import time by about 60 % on every cold start. "
    "docs/runtime.md has the dates, the measurements and the decision."
)
APIG4_WEBSOCKET_REASON = (
    "The Pusher protocol authorizes inside the connection, not at the handshake: the app key in the URL is public "
    "by design, $connect validates it (and app limits) in the connect handler, and private/presence/encrypted "
    "channels and user sign-in are authorized per frame with HMAC-SHA256 signatures from the customer's backend, "
    "verified by the message handler. An API Gateway authorizer has nothing to check that pusher-js sends."
)
APIG4_REST_REASON = (
    "Pusher REST requests are authenticated by the Pusher signature scheme (auth_key, auth_timestamp, "
    "auth_signature = HMAC-SHA256 of method, path and sorted query with the app secret, body_md5), verified by "
    "the http_api handler on every request; the server SDKs cannot send IAM, JWT or Lambda-authorizer credentials."
)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def _finding_form(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag spells it in finding ids (``<Ref>``, ``<Id.Attr>``)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_finding_form(part) for part in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise ValueError(f"cannot spell {value!r} as a cdk-nag finding")


def _manage_connections_resource(stack: cdk.Stack, role: iam.IRole) -> str:
    """The @connections resource of ``role``'s ManageConnections grant, exactly as the template has it (the
    region and partition are literals when the CLI knows them, references otherwise)."""
    policy = role.node.find_child("DefaultPolicy")
    document = stack.resolve(policy.document)  # type: ignore[attr-defined]
    [resource] = [s["Resource"] for s in document["Statement"] if s["Action"] == "execute-api:ManageConnections"]
    return _finding_form(resource)


def acknowledge_findings(stack: SocklessStack) -> None:
    for function in stack.functions.values():
        acknowledge(function.function, "AwsSolutions-L1", LATEST_RUNTIME_REASON)

    # ManageConnections needs the connection id in the resource; ids are minted by API Gateway per connection.
    for name, function in stack.functions.items():
        if not stack.function_specs[name].posts:
            continue
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::{_manage_connections_resource(stack, function.role)}]",
            f"{name} posts frames to, reads and deletes WebSocket connections whose ids API Gateway assigns at "
            "runtime; the grant is execute-api:ManageConnections on this API's own stage's @connections only "
            "(POST, GET and DELETE methods), not on any other API or stage.",
        )
    for name, function in stack.functions.items():
        if stack.network is not None:
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                f"{name} runs in the Valkey VPC: Lambda manages its network interfaces with the function's role, "
                "and ec2:CreateNetworkInterface/Describe*/Delete*/Assign*/Unassign* support no resource scoping.",
            )

    acknowledge(
        stack.async_failures,
        "AwsSolutions-SQS3",
        "AsyncFailures is itself a dead-letter queue: the on-failure destination of the welcome and fanout "
        "functions' asynchronous invocations (a Lambda destination, which cdk-nag does not recognise as a DLQ).",
    )

    failures = getattr(stack.frames, "failures", None)  # the ordered frames stream's (-c ordered_frames=stream)
    if failures is not None:
        acknowledge(
            failures,
            "AwsSolutions-SQS3",
            "FramesStream/Failures is itself a dead-letter queue: the on-failure destination of the message "
            "function's DynamoDB stream event source mapping (Lambda's, which cdk-nag does not recognise as a DLQ).",
        )

    for route in stack.websocket.api.node.find_all():
        if isinstance(route, cdk.aws_apigatewayv2.CfnRoute):
            acknowledge(route, "AwsSolutions-APIG4", APIG4_WEBSOCKET_REASON)
    for route in stack.rest.api.node.find_all():
        if isinstance(route, cdk.aws_apigatewayv2.CfnRoute):
            acknowledge(route, "AwsSolutions-APIG4", APIG4_REST_REASON)
    ping = stack.websocket.node.try_find_child("PingRoute")
    if ping is not None:
        acknowledge(ping, "AwsSolutions-APIG4", APIG4_WEBSOCKET_REASON)

    if not stack.config.access_logs:
        for stage in (stack.websocket.stage, stack.rest.stage):
            acknowledge(
                stage,
                "AwsSolutions-APIG1",
                "Deployed with -c access_logs=false: the team chose not to pay for a log line per frame (pings "
                "included) and per REST request (docs/cost.md). The functions still log warnings and errors, and a "
                "sample of invocations in full; what is lost is a per-request record with the source IP.",
            )

    for app_id, secret in stack.app_secrets.secrets.items():
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            f"App {app_id}'s secret is shared with the customer's backend servers, which sign REST calls and channel "
            "auth with it: an automatic rotation would break them until they are updated, so rotation is a "
            "coordinated manual procedure (docs/deploy.md, 'Rotating an app secret').",
        )

    logging = stack.node.try_find_child("ApiGatewayLogging")
    if logging is not None:
        acknowledge(
            logging,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-wide API Gateway logging role (AWS::ApiGateway::Account) needs exactly what this AWS-managed "
            "policy grants, and AWS keeps it current; it is assumable by apigateway.amazonaws.com only.",
        )

    distribution = stack.edge.distribution
    acknowledge(
        distribution,
        "AwsSolutions-CFR1",
        "A realtime endpoint for apps whose users are anywhere: restricting countries is the app's business decision, "
        "and the distribution serves no content of its own to protect.",
    )
    acknowledge(
        distribution,
        "AwsSolutions-CFR2",
        "WAF inspects only the WebSocket upgrade request, never the frames after it, and every REST call is already "
        "HMAC-signed and rate-limited per app by the handlers; a web ACL would add a fixed monthly cost without "
        "covering the traffic that matters. Teams that want one can attach it to the distribution.",
    )
    acknowledge(
        distribution,
        "AwsSolutions-CFR3",
        "Both origins already log every request: WebSocket stage access logs (connect, every message route, "
        "disconnect, with source IP) and HTTP API access logs; CloudFront standard logs would duplicate them and need "
        "an ACL-enabled S3 bucket."
        if stack.config.access_logs
        else "Deployed with -c access_logs=false: no per-request logs at the origins either, by choice (the bill, "
        "docs/cost.md); CloudFront standard logs would need an ACL-enabled S3 bucket and cost more than the origins' "
        "access logs that were turned off.",
    )
    if stack.config.domain_name is None:
        acknowledge(
            distribution,
            "AwsSolutions-CFR4",
            "Without a custom domain the distribution uses the default *.cloudfront.net certificate, for which "
            "CloudFront only offers the TLSv1 security policy; deploying with -c domain_name/certificate_arn sets "
            "TLSv1.2_2021 (docs/deploy.md).",
        )
