"""botocore calls to the emulator's moto, handed over before botocore signs and sends them.

Every botocore client of the emulator's process (the functions', the event source mappings', the emulator's
own) whose endpoint is a running ``aws.Moto`` reaches it in-process. ``aws.Moto`` first did so at botocore's
``before-send`` (the request built, signed and about to go on the wire); this hook takes the call one step
earlier, at ``before-call``: botocore has validated and serialized the parameters (the same request body
AWS would get) and would now build an HTTP request, sign it (SigV4: a canonical request, three HMACs),
run its retry loop around the send and parse the answer. Here the serialized request goes to the same gate
(``Moto._in_process``: IAM, the meter's observers, one request at a time) and to the same moto responder;
the answer is parsed by botocore's own parser for the protocol, with the events botocore emits around a send
(``before-parse``, ``response-received``, ``needs-retry``: the client's retry policy decides on an error as
it would) — a sixth of a request's CPU less (bench/RESULTS.md, "Emulator speed").

What the request no longer carries is its signature: IAM knows the caller by the access key of the
client's credentials, written into the ``Authorization`` header's credential scope as SigV4 would (with
the signing region and service), which is all the gate and moto read of it (signatures are not verified).
A call this hook cannot hand over exactly (no credentials, unsigned, a query string, adaptive retries whose
rate limiter runs at ``before-send``) takes botocore's full path, which still ends in ``before-send``.
tests/emulator/test_moto_calls.py compares both paths operation by operation.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

# Set by aws.Moto.start/stop: the running emulators' moto by origin (``scheme://host:port``).
Running = dict[str, Any]


def before_call(running: Running, model: Any, params: dict[str, Any], request_signer: Any, **_kwargs: Any) -> Any:
    """The ``before-call`` handler: ``(http_response, parsed)`` for a call to a running moto, else None."""
    from botocore import UNSIGNED
    from botocore.awsrequest import AWSPreparedRequest, HeadersDict

    parts = urlsplit(params["url"])
    moto = running.get(f"{parts.scheme}://{parts.netloc}")
    if moto is None or params.get("query_string") or parts.query:
        return None
    context = params["context"]
    config = context.get("client_config")
    if config is not None and (config.retries or {}).get("mode") == "adaptive":
        return None
    credentials = getattr(request_signer, "_credentials", None)
    if credentials is None or request_signer.signature_version is UNSIGNED:
        return None
    access_key = credentials.get_frozen_credentials().access_key
    region = (context.get("signing") or {}).get("region") or request_signer.region_name
    scope = f"{access_key}/{time.strftime('%Y%m%d', time.gmtime())}/{region}/{model.service_model.signing_name}"
    headers = HeadersDict(params["headers"])
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={scope}/aws4_request, SignedHeaders=host, Signature=-"
    body = params["body"]
    body = body.encode() if isinstance(body, str) else bytes(body or b"")
    emitter = request_signer._event_emitter
    service_id = model.service_model.service_id.hyphenize()
    attempts = 1
    while True:
        context.setdefault("retries", {})["attempt"] = attempts
        request = AWSPreparedRequest(params["method"], params["url"], headers, body, False)
        http = moto._in_process(request)
        if http is None:  # not a service moto plays here (DynamoDB, SQS): the full path
            return None
        parsed = _parse(emitter, service_id, model, http)
        emitter.emit(
            f"response-received.{service_id}.{model.name}",
            response_dict=_response_dict(http, model),
            parsed_response=parsed,
            context=context,
            exception=None,
        )
        delay = _first(
            emitter.emit(
                f"needs-retry.{service_id}.{model.name}",
                response=(http, parsed),
                endpoint=None,
                operation=model,
                attempts=attempts,
                caught_exception=None,
                request_dict=params,
            )
        )
        if delay is None or delay is False:
            break
        time.sleep(delay)
        attempts += 1
    if "ResponseMetadata" in parsed:
        parsed["ResponseMetadata"]["RetryAttempts"] = attempts - 1
    return http, parsed


def _first(responses: list[tuple[Any, Any]]) -> Any:
    for _handler, response in responses:
        if response is not None:
            return response
    return None


def _response_dict(http: Any, model: Any) -> dict[str, Any]:
    from botocore.endpoint import convert_to_response_dict

    return convert_to_response_dict(http, model)  # type: ignore[no-any-return]


def _parse(emitter: Any, service_id: str, model: Any, http: Any) -> dict[str, Any]:
    """``Endpoint._do_get_response``'s parsing of an answer, on ``http`` (an ``AWSResponse``)."""
    from botocore.parsers import ResponseParserFactory

    response_dict = _response_dict(http, model)
    customized: dict[str, Any] = {}
    emitter.emit(
        f"before-parse.{service_id}.{model.name}",
        operation_model=model,
        response_dict=response_dict,
        customized_response_dict=customized,
    )
    parser = ResponseParserFactory().create_parser(model.service_model.resolved_protocol)
    parsed: dict[str, Any] = parser.parse(response_dict, model.output_shape)
    parsed.update(customized)
    if http.status_code >= 300:
        code = parsed.get("Error", {}).get("Code")
        shape = None if code is None else model.service_model.shape_for_error_code(code)
        if shape is not None:
            parsed.update(parser.parse(response_dict, shape))
    return parsed
