"""The SigV4 signer against botocore's own: the same canonical request and the same ``Authorization`` header
for a fixed clock and fixed credentials, with and without a session token, for the management API's calls."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from shared.sigv4 import Credentials, Signer, canonical_request, payload_hash

NOW = datetime.datetime(2026, 12, 2, 5, 59, 59, tzinfo=datetime.UTC)
ENDPOINT = "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod"
HOST = "abc123defg.execute-api.eu-west-1.amazonaws.com"
# connectionIds are base64-ish: "=" (and in principle "+", "/") must be percent-encoded in the path.
CONNECTION_ID = "L0SM9cOFvHcCIhw="
CREDENTIALS = [
    pytest.param(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), id="long-term"),
    pytest.param(
        Credentials("ASIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjE+/session=="),
        id="session-token",
    ),
]


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore reads the clock through ``botocore.auth.get_current_datetime``; freeze it at ``NOW``."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: NOW.replace(tzinfo=None))


def ours(credentials: Credentials, method: str, path: str, body: bytes) -> dict[str, str]:
    signer = Signer("execute-api", "eu-west-1", clock=NOW.timestamp)
    return dict(signer.sign(credentials, method, HOST, path, payload_hash(body)))


def what_boto3_sends(credentials: Credentials, operation: str, **kwargs: Any) -> AWSRequest:
    """The request the boto3 management API client would put on the wire (captured before it is sent)."""
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        region_name="eu-west-1",
    )
    client = session.client(
        "apigatewaymanagementapi", endpoint_url=ENDPOINT, config=Config(retries={"total_max_attempts": 1})
    )
    captured: list[AWSRequest] = []

    def capture(request: AWSRequest, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, None)

    client.meta.events.register("before-send", capture)
    # botocore then reads the (absent) raw stream of our canned response: the request is captured by then
    with contextlib.suppress(AttributeError):
        getattr(client, operation)(**kwargs)
    return captured[0]


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(
    ("operation", "method", "body"),
    [
        pytest.param("post_to_connection", "POST", b'{"event":"e","data":"{\\"n\\":1}"}', id="post"),
        pytest.param("delete_connection", "DELETE", b"", id="delete"),
        pytest.param("get_connection", "GET", b"", id="get"),
    ],
)
def test_authorization_matches_what_the_boto3_client_sends(
    frozen_botocore: None, credentials: Credentials, operation: str, method: str, body: bytes
) -> None:
    kwargs: dict[str, Any] = {"ConnectionId": CONNECTION_ID}
    if body:
        kwargs["Data"] = body
    sent = what_boto3_sends(credentials, operation, **kwargs)
    path = "/prod/@connections/L0SM9cOFvHcCIhw%3D"
    assert sent.url == f"https://{HOST}{path}"
    headers = ours(credentials, method, path, body)
    assert headers["Authorization"] == sent.headers["Authorization"].decode()
    assert headers["X-Amz-Date"] == sent.headers["X-Amz-Date"].decode()
    if credentials.token:
        assert headers["X-Amz-Security-Token"] == sent.headers["X-Amz-Security-Token"].decode()
    else:
        assert "X-Amz-Security-Token" not in headers


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_canonical_request_matches_botocores(frozen_botocore: None, credentials: Credentials) -> None:
    body = b"frame"
    path = "/prod/@connections/a%2Bb%2Fc%3D"
    request = AWSRequest(method="POST", url=f"https://{HOST}{path}", data=body)
    auth = botocore.auth.SigV4Auth(
        BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token), "execute-api", "eu-west-1"
    )
    auth.add_auth(request)
    authorization = request.headers["Authorization"]
    del request.headers["Authorization"]  # not part of what was signed
    amz_date = NOW.strftime("%Y%m%dT%H%M%SZ")
    expected = auth.canonical_request(request)
    assert canonical_request("POST", HOST, path, "", payload_hash(body), amz_date, credentials.token)[0] == expected
    assert ours(credentials, "POST", path, body)["Authorization"] == authorization


def test_the_signing_key_is_derived_once_per_day_and_secret() -> None:
    now = [NOW.timestamp()]
    signer = Signer("execute-api", "eu-west-1", clock=lambda: now[0])
    first = Credentials("AKID", "secret-1", "token")
    for n in range(50):
        now[0] += 60
        signer.sign(first, "POST", HOST, f"/prod/@connections/c{n}", payload_hash(b"x"))
    assert signer.keys_derived == 1  # 06:00:59 .. 06:49:59: one day
    now[0] = NOW.replace(day=3).timestamp()
    signer.sign(first, "POST", HOST, "/prod/@connections/c", payload_hash(b"x"))
    assert signer.keys_derived == 2  # the next UTC day
    signer.sign(Credentials("AKID", "secret-2", "token2"), "POST", HOST, "/prod/@connections/c", payload_hash(b"x"))
    assert signer.keys_derived == 3  # rotated temporary credentials
