"""Per-IP limits on AWS count the viewer, not the CloudFront edge that forwarded it."""

from __future__ import annotations

import pytest

from functions.client_ip import client_ip

EDGE = "130.176.1.10"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, EDGE, id="no-headers-direct-call"),
        pytest.param({"X-Forwarded-For": "203.0.113.9"}, EDGE, id="forwarded-for-without-cloudfront-is-ignored"),
        pytest.param(
            {"Via": "1.1 abc.cloudfront.net (CloudFront)", "X-Forwarded-For": f"203.0.113.9, {EDGE}"},
            "203.0.113.9",
            id="viewer-before-the-edge",
        ),
        pytest.param(
            {"via": "2.0 abc.cloudfront.net (CloudFront)", "x-forwarded-for": "203.0.113.9"},
            "203.0.113.9",
            id="edge-not-appended",
        ),
        pytest.param(
            {"Via": "1.1 abc.cloudfront.net (CloudFront)", "X-Forwarded-For": f"198.51.100.1, 203.0.113.9, {EDGE}"},
            "203.0.113.9",
            id="client-supplied-entries-are-not-trusted",
        ),
        pytest.param({"Via": "1.1 abc.cloudfront.net (CloudFront)", "X-Forwarded-For": EDGE}, EDGE, id="only-edge"),
    ],
)
def test_client_ip_is_the_viewer_behind_cloudfront(headers: dict[str, str], expected: str) -> None:
    assert client_ip(headers, EDGE) == expected
