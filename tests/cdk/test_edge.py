"""CloudFront: one host, pusher-js paths rewritten to the WebSocket stage, /apps/* to the HTTP API."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from cdk.components.edge import REWRITE_SOURCE, rewrite_code
from tests.cdk.conftest import REPO_ROOT, Synth, render, synthesize

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


def _distribution(synth: Synth) -> dict[str, Any]:
    _, distribution = synth.one("AWS::CloudFront::Distribution")
    return dict(distribution["Properties"]["DistributionConfig"])


def _origin_host(synth: Synth, origin_id: str) -> str:
    config = _distribution(synth)
    origin = next(o for o in config["Origins"] if o["Id"] == origin_id)
    return render(origin["DomainName"])


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_cloudfront_function_passes_its_node_tests_on_real_pusher_js_urls() -> None:
    result = subprocess.run(
        ["node", "--test", str(REWRITE_SOURCE.parent)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


def test_the_deployed_function_is_rewrite_js_with_the_stage_path(either: Synth) -> None:
    _, function = either.one("AWS::CloudFront::Function")
    props = function["Properties"]
    assert props["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert props["FunctionCode"] == rewrite_code("prod")
    assert "var STAGE_PATH = '/prod';" in props["FunctionCode"]
    assert props["AutoPublish"] is True


def test_pusher_js_connections_reach_the_websocket_api_through_the_function(either: Synth) -> None:
    config = _distribution(either)
    default = config["DefaultCacheBehavior"]
    function_id, _ = either.one("AWS::CloudFront::Function")
    assert default["FunctionAssociations"] == [
        {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": [function_id, "FunctionARN"]}}
    ]
    api_id, _ = either.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    assert _origin_host(either, default["TargetOriginId"]) == f"<{api_id}>.execute-api.<AWS::Region>.<AWS::URLSuffix>"
    assert default["CachePolicyId"] == CACHING_DISABLED
    # The upgrade headers (Sec-WebSocket-*) and the query string must reach API Gateway; its Host must not.
    assert default["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert default["ViewerProtocolPolicy"] == "https-only"


def test_rest_calls_under_apps_reach_the_http_api_unchanged(either: Synth) -> None:
    config = _distribution(either)
    [behavior] = config["CacheBehaviors"]
    assert behavior["PathPattern"] == "/apps/*"
    assert "FunctionAssociations" not in behavior  # the signed path must arrive as the SDK signed it
    assert {"GET", "POST", "HEAD"} <= set(behavior["AllowedMethods"])
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    api_id, _ = either.one("AWS::ApiGatewayV2::Api", ProtocolType="HTTP")
    assert _origin_host(either, behavior["TargetOriginId"]) == f"<{api_id}>.execute-api.<AWS::Region>.<AWS::URLSuffix>"


def test_origins_are_reached_over_tls_1_2_only(either: Synth) -> None:
    for origin in _distribution(either)["Origins"]:
        assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
        assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]


def test_a_custom_domain_gets_its_certificate_and_a_tls_1_2_floor() -> None:
    certificate = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    synth = synthesize({"domain_name": "ws.example.com", "certificate_arn": certificate})
    config = _distribution(synth)
    assert config["Aliases"] == ["ws.example.com"]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": certificate,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    assert synth.json["Outputs"]["WebSocketHost"]["Value"] == "ws.example.com"
