"""AWS Signature Version 4 for the few hot calls sockless makes without botocore (the ``@connections`` posts).

botocore signs every request from scratch: it derives the signing key (four HMACs) per call, builds the
canonical request through several helper objects and formats the date each time; with the rest of its
request pipeline that is most of the ~1.1 ms of CPU a boto3 ``post_to_connection`` costs. Here the signing
key is derived once per (secret, day, region, service) and kept, the timestamp is formatted once per second,
and the payload hash is computed once per frame by the caller (a broadcast posts the same bytes to every
recipient), leaving one SHA-256 and one HMAC per request.

The algorithm is AWS's "Create a signed AWS API request" (Signature Version 4 in the IAM user guide): the
canonical request (method, URI-encoded path, query, signed headers, payload hash), the string to sign
(``AWS4-HMAC-SHA256``, timestamp, credential scope, hash of the canonical request), and the signature, an
HMAC with the key derived from ``AWS4`` + secret, the date, the region, the service and ``aws4_request``.
Paths are encoded the way botocore does for every service but S3 (each segment URI-encoded a second time:
an already-encoded ``%3D`` in a connectionId becomes ``%253D``); tests/unit/test_sigv4.py checks the
result against botocore's own signer, byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """One set of AWS credentials; ``token`` is the session token of temporary ones (Lambda's role)."""

    access_key: str
    secret_key: str
    token: str | None = None


def payload_hash(body: bytes) -> str:
    """Hex SHA-256 of a request body; compute it once per body and reuse it for every request carrying it."""
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def canonical_path(path: str) -> str:
    """The canonical URI of an already URI-encoded path: encoded again, ``/`` and ``~`` kept (botocore's
    rule for every service but S3)."""
    return quote(path, safe="/~")


class Signer:
    """Signs requests for one service in one region; cheap to call once per request.

    ``clock`` returns Unix time (tests freeze it). The derived key is cached per day and per secret: a
    refreshed secret (temporary credentials) or a new UTC day derives a new one, nothing else does.
    """

    def __init__(self, service: str, region: str, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.region = region
        self._clock = clock
        self._second = -1
        self._amz_date = ""
        self._day = ""
        self._key_for: tuple[str, str] = ("", "")
        self._key = b""
        self.keys_derived = 0  # how many times the four-HMAC derivation ran (tests read it)

    def timestamp(self) -> tuple[str, str]:
        """``(X-Amz-Date, YYYYMMDD)`` for now, formatted once per second."""
        now = int(self._clock())
        if now != self._second:
            self._second = now
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._day = self._amz_date[:8]
        return self._amz_date, self._day

    def signing_key(self, secret_key: str, day: str) -> bytes:
        if self._key_for != (secret_key, day):
            key = hmac.digest(f"AWS4{secret_key}".encode(), day.encode(), "sha256")
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._key, self._key_for = key, (secret_key, day)
            self.keys_derived += 1
        return self._key

    def sign(
        self,
        credentials: Credentials,
        method: str,
        host: str,
        path: str,
        body_hash: str,
        query: str = "",
        canonical_uri: str | None = None,
    ) -> list[tuple[str, str]]:
        """The headers that authenticate one request: ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary
        credentials only) and ``Authorization``. ``path`` is URI-encoded as sent on the wire; ``query`` is
        the canonical query string (keys sorted, values encoded), empty for the management API; ``host`` as
        sent in the ``Host`` header (with the port when it is not the scheme's default); ``canonical_uri`` is
        ``canonical_path(path)`` when the caller keeps it (it is the costliest part to compute)."""
        amz_date, day = self.timestamp()
        token = credentials.token
        uri = canonical_uri if canonical_uri is not None else canonical_path(path)
        canonical, signed = canonical_request(method, host, uri, query, body_hash, amz_date, token, encoded=True)
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.digest(self.signing_key(credentials.secret_key, day), to_sign.encode(), "sha256").hex()
        authorization = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        result = [("X-Amz-Date", amz_date)]
        if token:
            result.append(("X-Amz-Security-Token", token))
        result.append(("Authorization", authorization))
        return result


def canonical_request(
    method: str,
    host: str,
    path: str,
    query: str,
    body_hash: str,
    amz_date: str,
    token: str | None,
    *,
    encoded: bool = False,
) -> tuple[str, str]:
    """The canonical request and its signed-header list (``encoded``: ``path`` is the canonical URI already).
    Only ``host``, ``x-amz-date`` and the session token
    are signed: the management API needs no others, and botocore signs exactly these for its calls."""
    if token:
        signed = "host;x-amz-date;x-amz-security-token"
        headers = f"host:{host}\nx-amz-date:{amz_date}\nx-amz-security-token:{token}\n"
    else:
        signed = "host;x-amz-date"
        headers = f"host:{host}\nx-amz-date:{amz_date}\n"
    uri = path if encoded else canonical_path(path)
    return f"{method}\n{uri}\n{query}\n{headers}\n{signed}\n{body_hash}", signed
