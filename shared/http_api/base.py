"""Request and response values shared by the local server and the ``http_api`` Lambda."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # the /apps/... path the SDK signed, with any stage or proxy prefix already removed
    query: Mapping[str, str]
    body: bytes = b""
    ip: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: Any  # JSON-serialisable
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, message: str) -> HttpResponse:
        return cls(status, {"error": message})
