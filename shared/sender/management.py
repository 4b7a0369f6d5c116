"""The API Gateway management API (``@connections``) over the lean HTTP/1.1 pool, signed with SigV4.

This module builds the requests and reads the answers; shared/http1.py carries them (in batches, on
keep-alive connections) and the sender decides. One call is one signed request: ``POST`` (PostToConnection,
the frame is the raw body), ``GET`` (GetConnection) or ``DELETE`` (DeleteConnection) of
``{endpoint}/@connections/{connectionId}``, the connectionId percent-encoded as the AWS SDKs do. The answer
is reduced to what the sender decides on: the status and the ``x-amzn-ErrorType`` code (API Gateway's
error shape, the same header botocore reads). See the API Gateway developer guide, "Use @connections
commands in your backend service", for the calls, and "Signature Version 4" in the IAM user guide for
the signing (shared/sigv4.py).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from shared.http1 import Http1Pool, Response
from shared.sigv4 import Credentials, Signer, canonical_path

CredentialSource = Callable[[], Credentials]
# https://{api-id}.execute-api.{region}.amazonaws.com/{stage}
# A connectionId is encoded in the path as the SDKs do (RFC 3986: all but unreserved characters), and encoded
# once more in the canonical URI (shared/sigv4.py).
CONNECTION_ID = re.compile(r"[A-Za-z0-9+/=_.~-]*")
WIRE = str.maketrans({"+": "%2B", "/": "%2F", "=": "%3D"})
CANONICAL = str.maketrans({"+": "%252B", "/": "%252F", "=": "%253D"})
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    error: str  # the x-amzn-ErrorType code ("GoneException", "LimitExceededException"), "" on success


def region_of(endpoint_url: str) -> str | None:
    """The region in an execute-api endpoint's host name; ``None`` for other hosts (the emulator)."""
    match = EXECUTE_API_HOST.match(urlsplit(endpoint_url).hostname or "")
    return match.group(1) if match else None


def botocore_credentials(session: Any | None = None) -> CredentialSource:
    """Credentials from botocore's provider chain (in Lambda: the function role's, from the environment).

    Temporary credentials that botocore can refresh are read through ``get_frozen_credentials`` on every
    call, so a refresh is picked up; the signer derives a new key only when the secret changes.
    """
    if session is None:
        import botocore.session

        session = botocore.session.get_session()
    found = session.get_credentials()
    if found is None:
        raise RuntimeError("no AWS credentials found for the management API")
    last: list[Any] = [None, None]

    def current() -> Credentials:
        frozen = found.get_frozen_credentials()
        if frozen != last[0]:
            last[:] = [frozen, Credentials(frozen.access_key, frozen.secret_key, frozen.token)]
        result: Credentials = last[1]
        return result

    return current


class ManagementApi:
    """Signed ``@connections`` calls to one endpoint (``https://{api-id}.execute-api.{region}.amazonaws.com/
    {stage}`` or the emulator's), over ``pool_size`` keep-alive connections."""

    def __init__(
        self,
        endpoint_url: str,
        credentials: CredentialSource,
        *,
        region: str | None = None,
        pool_size: int = 64,
        timeout: float = 5.0,
        signer: Signer | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        region = region or region_of(endpoint_url)
        if region is None:
            raise ValueError(f"cannot tell the region of {endpoint_url!r}: pass it")
        origin = f"{parts.scheme}://{parts.netloc}"
        self.pool = Http1Pool(origin, size=pool_size, timeout=timeout, ssl_context=ssl_context)
        self.base_path = parts.path.rstrip("/")
        self.credentials = credentials
        self.signer = signer or Signer("execute-api", region)
        self._canonical_base = canonical_path(self.base_path)

    def paths(self, connection_id: str) -> tuple[str, str]:
        """The request path and its canonical URI for SigV4 (the path percent-encoded once more).

        connectionIds are base64 text: ``translate`` encodes their three reserved characters in a fraction of
        what ``urllib.parse.quote`` costs (twice per post, it was a fifth of a post's CPU); anything else
        takes the general way."""
        if CONNECTION_ID.fullmatch(connection_id):
            return (
                f"{self.base_path}/@connections/{connection_id.translate(WIRE)}",
                f"{self._canonical_base}/%40connections/{connection_id.translate(CANONICAL)}",
            )
        path = f"{self.base_path}/@connections/{quote(connection_id, safe='')}"
        return path, canonical_path(path)

    def request(self, method: str, connection_id: str, body: bytes, body_hash: str, credentials: Credentials) -> bytes:
        """The bytes of one signed request."""
        path, uri = self.paths(connection_id)
        host = self.pool.host_header
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        signed = self.signer.sign(credentials, method, host, path, body_hash, canonical_uri=uri)
        lines.extend(f"{name}: {value}" for name, value in signed)
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def answer(self, response: Response) -> Answer:
        """The status and the ``x-amzn-ErrorType`` code of an answer."""
        if response.status < 300:
            return Answer(response.status, "")
        error = response.header(b"x-amzn-errortype") or b""
        # "GoneException:http://internal.amazon.com/coral/..." -> "GoneException" (as botocore reads it)
        return Answer(response.status, error.split(b":", 1)[0].decode("latin-1"))

    async def close(self) -> None:
        await self.pool.close()
