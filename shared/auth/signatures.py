"""HMAC-SHA256 signatures for channel auth, user sign-in, REST requests and webhooks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import HttpError

MAX_CLOCK_SKEW_SECONDS = 600


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign_channel(secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    message = f"{socket_id}:{channel}" if channel_data is None else f"{socket_id}:{channel}:{channel_data}"
    return sign(secret, message)


def sign_user(secret: str, socket_id: str, user_data: str) -> str:
    return sign(secret, f"{socket_id}::user::{user_data}")


def _check_token(key: str, secret: str, auth: object, message: str) -> bool:
    """``auth`` must be ``"<key>:<hex sig>"`` for this app's key; the signature is compared in constant time."""
    if not isinstance(auth, str):
        return False
    given_key, sep, signature = auth.partition(":")
    if not sep or not hmac.compare_digest(given_key.encode(), key.encode()):
        return False
    return hmac.compare_digest(signature.encode(), sign(secret, message).encode())


def check_channel_auth(
    key: str, secret: str, auth: object, socket_id: str, channel: str, channel_data: str | None = None
) -> bool:
    message = f"{socket_id}:{channel}" if channel_data is None else f"{socket_id}:{channel}:{channel_data}"
    return _check_token(key, secret, auth, message)


def check_signin(key: str, secret: str, auth: object, socket_id: str, user_data: str) -> bool:
    return _check_token(key, secret, auth, f"{socket_id}::user::{user_data}")


def string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in params.items() if k.lower() != "auth_signature")
    )
    return f"{method.upper()}\n{path}\n{query}"


def sign_request(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    return sign(secret, string_to_sign(method, path, params))


def verify_request(
    *, key: str, secret: str, method: str, path: str, params: Mapping[str, str], body: bytes, now: float
) -> None:
    """Check a signed REST request; raise ``HttpError(401)`` naming what is wrong.

    The rules: docs/sources.md#rest-api-and-request-signing.

    ``path`` is the ``/apps/...`` path the SDK signed, whatever prefix the request came through.
    """
    lowered = {k.lower(): v for k, v in params.items()}
    for required in ("auth_key", "auth_timestamp", "auth_version", "auth_signature"):
        if required not in lowered:
            raise HttpError(401, f"Missing parameter: {required}")
    if not hmac.compare_digest(lowered["auth_key"].encode(), key.encode()):
        raise HttpError(401, "Invalid auth_key")
    if lowered["auth_version"] != "1.0":
        raise HttpError(401, "Unsupported auth_version")
    try:
        timestamp = int(lowered["auth_timestamp"])
    except ValueError:
        raise HttpError(401, "Invalid auth_timestamp") from None
    if abs(now - timestamp) > MAX_CLOCK_SKEW_SECONDS:
        raise HttpError(401, "Timestamp expired: more than 600 s from server time")
    if body:
        if "body_md5" not in lowered:
            raise HttpError(401, "Missing parameter: body_md5")
        if not hmac.compare_digest(lowered["body_md5"].encode(), hashlib.md5(body).hexdigest().encode()):
            raise HttpError(401, "body_md5 does not match the body")
    elif "body_md5" in lowered and lowered["body_md5"] != hashlib.md5(b"").hexdigest():
        raise HttpError(401, "body_md5 does not match the body")
    expected = sign_request(secret, method, path, params)
    if not hmac.compare_digest(lowered["auth_signature"].encode(), expected.encode()):
        raise HttpError(401, "Invalid signature")


def webhook_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
