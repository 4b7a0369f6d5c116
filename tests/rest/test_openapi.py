"""The OpenAPI document: valid, shipped up to date, served by the server, and true of the live server.

schemathesis generates requests from the document (schema-conforming and schema-violating ones) and checks
every answer against it. The document describes signing in prose and as ``apiKey`` schemes; schemathesis
cannot compute an HMAC, so its copy has the security schemes removed and every generated request is signed
on its final bytes by :class:`PusherSigner` before it leaves.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NOT_SET

from shared.http_api import openapi
from tests.conftest import NUMERIC_APP
from tests.rest.clients import Creds
from tests.rest.conftest import Connect
from tests.serverproc import ROOT, ServerProcess

APP = Creds.of(NUMERIC_APP)
DOC = ROOT / "docs" / "openapi.json"
AUTH_PARAMS = {"auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5"}
EXPECTED_OPERATIONS = {
    ("post", "/apps/{app_id}/events"),
    ("post", "/apps/{app_id}/batch_events"),
    ("get", "/apps/{app_id}/channels"),
    ("get", "/apps/{app_id}/channels/{channel_name}"),
    ("get", "/apps/{app_id}/channels/{channel_name}/users"),
    ("post", "/apps/{app_id}/users/{user_id}/terminate_connections"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION_AND_MODE = 50


class PusherSigner(requests.auth.AuthBase):
    """Signs the request exactly as it will be sent: the decoded path and query the server will see (first
    value of a repeated key, like the server), and the body bytes after serialization."""

    def __init__(self, creds: Creds) -> None:
        self.creds = creds

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert request.url is not None and request.method is not None
        parts = urlsplit(request.url)
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in AUTH_PARAMS]
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        query = dict(reversed(pairs))  # first value wins
        query.update(auth_key=self.creds.key, auth_timestamp=str(int(time.time())), auth_version="1.0")
        if body:
            query["body_md5"] = hashlib.md5(body).hexdigest()
        to_sign = "&".join(f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in query.items()))
        message = f"{request.method.upper()}\n{unquote(parts.path)}\n{to_sign}"
        query["auth_signature"] = hmac.new(self.creds.secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        request.url = urlunsplit(parts._replace(query=urlencode(list(query.items()))))
        return request


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess({"apps": [NUMERIC_APP]}).start()
    yield proc
    proc.cleanup()


def test_the_document_is_valid_openapi_3() -> None:
    document = openapi.build()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_the_shipped_document_is_the_generated_one() -> None:
    """docs/openapi.json is written by ``python -m shared.http_api.openapi docs/openapi.json``."""
    assert json.loads(DOC.read_text()) == openapi.build()


def test_every_endpoint_is_documented_with_its_errors() -> None:
    paths: dict[str, Any] = openapi.build()["paths"]
    operations = {(method, path) for path, item in paths.items() for method in item}
    assert operations == EXPECTED_OPERATIONS
    for method, path in operations:
        responses = paths[path][method]["responses"]
        assert {"200", "400", "401", "403", "404", "413", "429"} <= set(responses), (method, path)
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]
            if status != "200":
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_server_serves_the_document(server: ServerProcess) -> None:
    response = requests.get(f"{server.url}/openapi.json", timeout=5)
    assert (response.status_code, response.json()) == (200, openapi.build())


def _schemathesis_schema(base_url: str) -> Any:
    document = copy.deepcopy(openapi.build())
    document.pop("security")
    document["components"].pop("securitySchemes")
    for item in document["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
    document["servers"] = [{"url": base_url}]
    return schemathesis.openapi.from_dict(document)


def _populate(server: ServerProcess) -> None:
    """Occupied channels, members and a cached event, so generated reads also meet non-empty answers."""
    signer = PusherSigner(APP)
    for channel in ("cache-fuzz", "presence-fuzz"):
        body = json.dumps({"name": "seed", "data": "{}", "channel": channel})
        response = requests.post(f"{server.url}/apps/{APP.id}/events", data=body, auth=signer, timeout=5)
        assert response.status_code == 200


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("operation", sorted(EXPECTED_OPERATIONS), ids=lambda op: f"{op[0]}-{op[1]}")
def test_the_live_server_conforms_to_the_document(
    server: ServerProcess, operation: tuple[str, str], mode: GenerationMode
) -> None:
    """No 5xx, only documented statuses, and every body matches its schema — for valid and invalid input."""
    _populate(server)
    schema = _schemathesis_schema(server.url)
    method, path = operation
    api_operation = schema[path][method.upper()]
    strategy = api_operation.as_strategy(generation_mode=mode, path_parameters={"app_id": APP.id})
    session = requests.Session()
    signer = PusherSigner(APP)
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, session=session, auth=signer, timeout=10)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()
    # Every request was signed, so none may fail on the signature: otherwise the checks above saw only 401s.
    assert statuses[401] == 0, dict(statuses)
    if mode is GenerationMode.POSITIVE and not path.endswith("/users"):  # random names are rarely presence-
        assert statuses[200] > 0, dict(statuses)


async def test_answers_about_real_subscribers_match_their_schemas(server: ServerProcess, connect: Connect) -> None:
    """Fuzzed names rarely hit occupied channels; these cases do, so non-empty answers are checked too."""
    for user in ("ann", "ben"):
        client = await connect(server, APP)
        await client.subscribe("presence-doc", user_id=user, user_info={"name": user})
        await client.subscribe("cache-doc")
    schema = _schemathesis_schema(server.url)
    signer = PusherSigner(APP)
    requests.post(
        f"{server.url}/apps/{APP.id}/events",
        data=json.dumps({"name": "state", "data": "{}", "channel": "cache-doc"}),
        auth=signer,
        timeout=5,
    ).raise_for_status()
    app = {"app_id": APP.id}
    cases = [
        ("/apps/{app_id}/channels", "GET", app, {"filter_by_prefix": "presence-", "info": "user_count"}, NOT_SET),
        ("/apps/{app_id}/channels", "GET", app, {"info": "subscription_count"}, NOT_SET),
        (
            "/apps/{app_id}/channels/{channel_name}",
            "GET",
            {**app, "channel_name": "presence-doc"},
            {"info": "user_count"},
            NOT_SET,
        ),
        (
            "/apps/{app_id}/channels/{channel_name}",
            "GET",
            {**app, "channel_name": "cache-doc"},
            {"info": "cache,subscription_count"},
            NOT_SET,
        ),
        ("/apps/{app_id}/channels/{channel_name}/users", "GET", {**app, "channel_name": "presence-doc"}, {}, NOT_SET),
        (
            "/apps/{app_id}/events",
            "POST",
            app,
            {},
            {"name": "e", "data": "x", "channels": ["presence-doc"], "info": "user_count"},
        ),
        (
            "/apps/{app_id}/batch_events",
            "POST",
            app,
            {},
            {"batch": [{"name": "e", "data": "x", "channel": "cache-doc", "info": "subscription_count"}]},
        ),
    ]
    answers = []
    for path, method, path_parameters, query, body in cases:
        case = schema[path][method].Case(path_parameters=path_parameters, query=query, body=body)
        response = case.call(base_url=server.url, auth=signer, timeout=10)
        case.validate_response(response, checks=CHECKS)
        answers.append(response.json())

    assert answers[0]["channels"] == {"presence-doc": {"user_count": 2}}
    assert answers[1]["channels"]["cache-doc"] == {"subscription_count": 2}
    assert answers[2] == {"occupied": True, "user_count": 2}
    assert answers[3]["cache"]["data"] == "{}"
    assert sorted(u["id"] for u in answers[4]["users"]) == ["ann", "ben"]
    assert answers[5] == {"channels": {"presence-doc": {"user_count": 2}}}
    assert answers[6] == {"batch": [{"subscription_count": 2}]}


def test_the_schemathesis_signer_matches_the_sdk_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signer used above reproduces the worked example, so its requests are really signed.

    The example: docs/sources.md#rest-api-and-request-signing.
    """
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    request = requests.Request("POST", "http://x/apps/3/events", data=body).prepare()
    signer = PusherSigner(Creds("3", "278d425bdf160c739803", "7ad3773142a6692b25b8"))
    monkeypatch.setattr(time, "time", lambda: 1353088179)
    signed = signer(request)
    query = dict(parse_qsl(urlsplit(signed.url or "").query))
    assert query["body_md5"] == "ec365a775a4cd0599faeb73354201b6f"
    assert query["auth_signature"] == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
