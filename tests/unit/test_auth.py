"""Pusher's published signature vectors (docs/sources.md#signatures) and the REST request checks built on them."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.auth.signatures import (
    check_channel_auth,
    check_signin,
    sign_channel,
    sign_request,
    sign_user,
    string_to_sign,
    verify_request,
    webhook_signature,
)
from shared.errors import HttpError

# The docs' test app (docs/sources.md#signatures, PSIG).
KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
SOCKET = "1234.1234"

PRESENCE_DATA = '{"user_id":10,"user_info":{"name":"Mr. Pusher"}}'
USER_DATA = '{"id":"12345"}'

PRIVATE_SIG = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
PRESENCE_SIG = "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
SIGNIN_SIG = "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"

# The REST worked example (docs/sources.md#rest-api-and-request-signing).
REST_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
REST_MD5 = "ec365a775a4cd0599faeb73354201b6f"
REST_TS = 1353088179
REST_SIG = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
REST_PATH = "/apps/3/events"


def rest_params(**changes: str) -> dict[str, str]:
    params = {"auth_key": KEY, "auth_timestamp": str(REST_TS), "auth_version": "1.0", "body_md5": REST_MD5}
    params.update(changes)
    return params


# -- channel and sign-in vectors ------------------------------------------------------------------------


def test_private_channel_vector() -> None:
    assert sign_channel(SECRET, SOCKET, "private-foobar") == PRIVATE_SIG


def test_presence_channel_vector_signs_the_channel_data_string() -> None:
    assert sign_channel(SECRET, SOCKET, "presence-foobar", PRESENCE_DATA) == PRESENCE_SIG


def test_presence_vector_of_the_docs_erratum_does_not_reproduce() -> None:
    """The page prints "Mr. Channels" with the "Mr. Pusher" digest; signing is over the exact string."""
    assert sign_channel(SECRET, SOCKET, "presence-foobar", PRESENCE_DATA.replace("Pusher", "Channels")) != PRESENCE_SIG


def test_signin_vector() -> None:
    assert sign_user(SECRET, SOCKET, USER_DATA) == SIGNIN_SIG


@pytest.mark.parametrize(
    ("auth", "channel", "channel_data", "ok"),
    [
        pytest.param(f"{KEY}:{PRIVATE_SIG}", "private-foobar", None, True, id="private-good"),
        pytest.param(f"{KEY}:{PRESENCE_SIG}", "presence-foobar", PRESENCE_DATA, True, id="presence-good"),
        pytest.param(f"{KEY}:{PRIVATE_SIG}", "private-other", None, False, id="other-channel"),
        pytest.param(f"{KEY}:{PRESENCE_SIG}", "presence-foobar", PRESENCE_DATA + " ", False, id="reserialized-data"),
        pytest.param(f"wrong-key:{PRIVATE_SIG}", "private-foobar", None, False, id="wrong-key-prefix"),
        pytest.param(PRIVATE_SIG, "private-foobar", None, False, id="no-key-prefix"),
        pytest.param(f"{KEY}:{PRIVATE_SIG.upper()}", "private-foobar", None, False, id="uppercase-hex"),
        pytest.param(f"{KEY}:", "private-foobar", None, False, id="empty-signature"),
        pytest.param(None, "private-foobar", None, False, id="missing"),
        pytest.param(12345, "private-foobar", None, False, id="not-a-string"),
    ],
)
def test_check_channel_auth(auth: object, channel: str, channel_data: str | None, ok: bool) -> None:
    assert check_channel_auth(KEY, SECRET, auth, SOCKET, channel, channel_data) is ok


def test_channel_auth_is_bound_to_the_socket() -> None:
    assert not check_channel_auth(KEY, SECRET, f"{KEY}:{PRIVATE_SIG}", "1234.1235", "private-foobar")


@pytest.mark.parametrize(
    ("auth", "user_data", "ok"),
    [
        pytest.param(f"{KEY}:{SIGNIN_SIG}", USER_DATA, True, id="good"),
        pytest.param(f"{KEY}:{SIGNIN_SIG}", '{"id":"12346"}', False, id="other-user"),
        pytest.param(f"{KEY}::user::{SIGNIN_SIG}", USER_DATA, False, id="protocol-page-format"),
        pytest.param(f"other:{SIGNIN_SIG}", USER_DATA, False, id="wrong-key"),
        pytest.param(f"{KEY}:{PRIVATE_SIG}", USER_DATA, False, id="channel-signature"),
    ],
)
def test_check_signin(auth: str, user_data: str, ok: bool) -> None:
    assert check_signin(KEY, SECRET, auth, SOCKET, user_data) is ok


# -- REST request signing -------------------------------------------------------------------------------


def test_rest_body_md5_vector() -> None:
    assert hashlib.md5(REST_BODY).hexdigest() == REST_MD5


def test_rest_string_to_sign_is_sorted_lowercased_and_unescaped() -> None:
    params = {"body_md5": REST_MD5, "auth_version": "1.0", "AUTH_KEY": KEY, "auth_timestamp": str(REST_TS)}
    assert string_to_sign("post", REST_PATH, {**params, "auth_signature": "x", "info": "a b,c"}) == (
        f"POST\n{REST_PATH}\nauth_key={KEY}&auth_timestamp={REST_TS}&auth_version=1.0&body_md5={REST_MD5}&info=a b,c"
    )


def test_rest_worked_vector() -> None:
    assert sign_request(SECRET, "POST", REST_PATH, rest_params()) == REST_SIG


def test_verify_request_accepts_the_worked_vector() -> None:
    verify_request(
        key=KEY,
        secret=SECRET,
        method="POST",
        path=REST_PATH,
        params=rest_params(auth_signature=REST_SIG),
        body=REST_BODY,
        now=REST_TS,
    )


@pytest.mark.parametrize("skew", [pytest.param(-600, id="600s-behind"), pytest.param(600, id="600s-ahead")])
def test_verify_request_accepts_up_to_600_seconds_of_skew(skew: int) -> None:
    verify_request(
        key=KEY,
        secret=SECRET,
        method="POST",
        path=REST_PATH,
        params=rest_params(auth_signature=REST_SIG),
        body=REST_BODY,
        now=REST_TS + skew,
    )


def test_verify_request_get_without_body_needs_no_body_md5() -> None:
    params = {"auth_key": KEY, "auth_timestamp": str(REST_TS), "auth_version": "1.0", "info": "user_count"}
    params["auth_signature"] = sign_request(SECRET, "GET", "/apps/3/channels", params)
    verify_request(key=KEY, secret=SECRET, method="GET", path="/apps/3/channels", params=params, body=b"", now=REST_TS)


def _signed(**changes: str) -> dict[str, str]:
    """Worked-vector params with ``changes`` applied and then correctly signed, so only ``changes`` is wrong."""
    params = rest_params(**changes)
    params["auth_signature"] = sign_request(SECRET, "POST", REST_PATH, params)
    return params


def _without(name: str) -> dict[str, str]:
    params = rest_params(auth_signature=REST_SIG)
    del params[name]
    return params


@pytest.mark.parametrize(
    ("params", "body", "now", "message"),
    [
        pytest.param(_without("auth_key"), REST_BODY, REST_TS, "Missing parameter: auth_key", id="no-auth_key"),
        pytest.param(
            _without("auth_timestamp"), REST_BODY, REST_TS, "Missing parameter: auth_timestamp", id="no-timestamp"
        ),
        pytest.param(
            _without("auth_version"), REST_BODY, REST_TS, "Missing parameter: auth_version", id="no-auth_version"
        ),
        pytest.param(
            _without("auth_signature"), REST_BODY, REST_TS, "Missing parameter: auth_signature", id="no-signature"
        ),
        pytest.param(_without("body_md5"), REST_BODY, REST_TS, "Missing parameter: body_md5", id="no-body_md5"),
        pytest.param(_signed(auth_key="another-key"), REST_BODY, REST_TS, "Invalid auth_key", id="wrong-auth_key"),
        pytest.param(_signed(auth_version="2.0"), REST_BODY, REST_TS, "Unsupported auth_version", id="auth_version"),
        pytest.param(_signed(auth_timestamp="soon"), REST_BODY, REST_TS, "Invalid auth_timestamp", id="ts-not-int"),
        pytest.param(_signed(), REST_BODY, REST_TS + 601, "Timestamp expired", id="expired-601s-old"),
        pytest.param(_signed(), REST_BODY, REST_TS - 601, "Timestamp expired", id="expired-601s-in-future"),
        pytest.param(_signed(), REST_BODY + b" ", REST_TS, "body_md5 does not match", id="body-changed"),
        pytest.param(_signed(body_md5="0" * 32), REST_BODY, REST_TS, "body_md5 does not match", id="md5-wrong"),
        pytest.param(_signed(body_md5=REST_MD5), b"", REST_TS, "body_md5 does not match", id="md5-for-empty-body"),
        pytest.param(
            rest_params(auth_signature="0" * 64), REST_BODY, REST_TS, "Invalid signature", id="signature-wrong"
        ),
        pytest.param(
            {**rest_params(auth_signature=REST_SIG), "info": "user_count"},
            REST_BODY,
            REST_TS,
            "Invalid signature",
            id="unsigned-extra-param",
        ),
    ],
)
def test_verify_request_refusals(params: dict[str, str], body: bytes, now: int, message: str) -> None:
    with pytest.raises(HttpError) as caught:
        verify_request(key=KEY, secret=SECRET, method="POST", path=REST_PATH, params=params, body=body, now=now)
    assert caught.value.status == 401
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PUT", REST_PATH, id="other-method"),
        pytest.param("POST", "/prod/apps/3/events", id="stage-prefixed-path"),
        pytest.param("POST", "/apps/4/events", id="other-app"),
    ],
)
def test_verify_request_signature_covers_method_and_path(method: str, path: str) -> None:
    with pytest.raises(HttpError, match="Invalid signature"):
        verify_request(
            key=KEY,
            secret=SECRET,
            method=method,
            path=path,
            params=rest_params(auth_signature=REST_SIG),
            body=REST_BODY,
            now=REST_TS,
        )


def test_verify_request_wrong_secret_is_a_bad_signature() -> None:
    with pytest.raises(HttpError, match="Invalid signature"):
        verify_request(
            key=KEY,
            secret="not-the-secret",
            method="POST",
            path=REST_PATH,
            params=rest_params(auth_signature=REST_SIG),
            body=REST_BODY,
            now=REST_TS,
        )


def test_webhook_signature_is_hmac_sha256_hex_of_the_raw_body() -> None:
    body = b'{"time_ms":1,"events":[]}'
    assert webhook_signature(SECRET, body) == hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
