"""Pusher signatures (docs/sources.md#signatures): pure HMAC code, constant-time comparisons, no I/O."""

from shared.auth.signatures import (
    check_channel_auth,
    check_signin,
    sign,
    sign_channel,
    sign_request,
    sign_user,
    verify_request,
)

__all__ = [
    "check_channel_auth",
    "check_signin",
    "sign",
    "sign_channel",
    "sign_request",
    "sign_user",
    "verify_request",
]
