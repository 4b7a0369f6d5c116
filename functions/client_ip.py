"""The viewer's IP address for per-IP limits, behind CloudFront as well as on API Gateway directly.

Behind the stack's CloudFront distribution, API Gateway's ``sourceIp`` is a CloudFront edge address shared by
many viewers, so limiting on it would throttle strangers together. CloudFront appends the viewer's address to
``X-Forwarded-For`` before forwarding, and marks the request with ``Via: ... (CloudFront)``; API Gateway then
appends the edge address. The viewer is therefore the last entry that is not ``sourceIp``. Entries before it
come from the client and are never trusted. A client calling execute-api directly and forging these headers
can at most pick the address it is limited under; the stage's own throttling still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


def client_ip(headers: Mapping[str, Any] | None, source_ip: str) -> str:
    headers = headers or {}
    if "cloudfront" not in _header(headers, "via").lower():
        return source_ip
    entries = [e.strip() for e in _header(headers, "x-forwarded-for").split(",") if e.strip()]
    while entries and entries[-1] == source_ip:
        entries.pop()
    return entries[-1] if entries else source_ip
