"""API Gateway's AWS integration to DynamoDB ``PutItem``, emulated: the ordered frames stream's ``$default``
(``-c ordered_frames=stream``, cdk/components/frames_stream.py).

API Gateway renders the route's request template into the JSON body of a DynamoDB action
(``arn:aws:apigateway:REGION:dynamodb:action/PutItem``), signed with the integration's credentials role. Here
the template is rendered with the subset of the mapping-template language it uses (API Gateway developer
guide, "WebSocket API mapping template reference"): ``#set($v = ...)`` lines of integer arithmetic on
``$context`` values, ``$context.NAME``, ``$input.body``, ``$util.base64Encode(...)`` and ``$util.urlEncode(...)``
(anything else is left as written and named at start-up); the action goes to moto signed as that role, so IAM
decides as it would on AWS (the role may only ``PutItem`` the frames table).

One connection's frames are written one after another, in the order they arrived (the same assumption as the
SQS integration, ``sqs_integration.py``). The table's stream (``streams.py``) picks each write up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from local_server.emulator.sqs_integration import InOrder
from local_server.emulator.template import Integration
from local_server.emulator.websocket import Socket, WebSocketApi

URI = re.compile(r"^arn:aws:apigateway:[^:]+:dynamodb:action/(?P<action>[A-Za-z]+)$")
_SET = re.compile(r"^\s*#set\(\s*\$(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<expression>[^)]*)\)\s*$", re.MULTILINE)
_ARITHMETIC = re.compile(r"^[\d\s+\-*/()]+$")
_VARIABLE = re.compile(
    r"\$util\.(?P<function>base64Encode|urlEncode)\(\$(?P<argument>[A-Za-z.]+)\)"
    r"|\$(?P<plain>context\.[A-Za-z.]+|input\.body|[A-Za-z_]\w*)"
)
_UNSUPPORTED = re.compile(r"\$(?!context\.|input\.body|util\.(base64Encode|urlEncode)\()(?:util|input)\b|#(?!set\()")


def render(template: str, context: dict[str, Any], body: str) -> str:
    """The request template with its ``#set`` lines evaluated and its variables replaced."""
    variables: dict[str, str] = {}

    def value(name: str) -> str:
        if name == "input.body":
            return body
        if name.startswith("context."):
            return str(context.get(name.removeprefix("context."), ""))
        return variables.get(name, f"${name}")

    def substitute(match: re.Match[str]) -> str:
        if match.group("function"):
            argument = value(match.group("argument"))
            if match.group("function") == "base64Encode":
                return base64.b64encode(argument.encode()).decode()
            return quote(argument, safe="")
        return value(match.group("plain"))

    for found in _SET.finditer(template):
        expression = _VARIABLE.sub(substitute, found.group("expression"))
        if not _ARITHMETIC.fullmatch(expression):
            raise ValueError(f"#set({found.group(0).strip()}): only integer arithmetic is emulated")
        variables[found.group("name")] = str(_integer(expression))
    return _VARIABLE.sub(substitute, _SET.sub("", template)).strip()


def _integer(expression: str) -> int:
    """Velocity's integer arithmetic (``/`` truncates), on digits, operators and parentheses only."""
    return int(eval(expression.replace("/", "//"), {"__builtins__": {}}, {}))


class DynamoDBIntegration:
    """Runs ``AWS`` integrations whose URI is a DynamoDB action; ``client_for(role_arn)`` gives a DynamoDB client
    signing as the integration's credentials role."""

    def __init__(self, *, client_for: Callable[[str], Any]) -> None:
        self.client_for = client_for
        self._in_order = InOrder()

    @staticmethod
    def handles(integration: Integration) -> bool:
        return bool(URI.match(integration.uri or ""))

    @staticmethod
    def unsupported(integration: Integration) -> list[str]:
        notes = []
        match = URI.match(integration.uri or "")
        if match is None or match.group("action") != "PutItem":
            notes.append(f"AWS integration {integration.logical_id}: only DynamoDB PutItem is emulated")
        for template in (integration.properties.get("RequestTemplates") or {}).values():
            if _UNSUPPORTED.search(str(template)):
                notes.append(
                    f"AWS integration {integration.logical_id}: template directives beyond #set, $context, "
                    "$input.body and $util.base64Encode/urlEncode are sent as written"
                )
        return notes

    async def run(
        self, api: WebSocketApi, socket: Socket, integration: Integration, body: str | bytes, key: str
    ) -> None:
        await self._in_order.run(
            api,
            socket,
            body,
            key,
            lambda event: self._put(integration, event),
            f"DynamoDB integration {integration.logical_id}",
        )

    async def _put(self, integration: Integration, event: dict[str, Any]) -> None:
        selection = (integration.template_selection or "\\$default").replace("\\", "")
        # The resolved templates: the table's name is a reference in the template's own.
        templates = integration.properties.get("RequestTemplates") or {}
        template = str(templates.get(selection) or templates.get("$default", ""))
        # A binary frame's body is base64 text here: what the integration's CONVERT_TO_TEXT would send.
        request = json.loads(render(template, event["requestContext"], str(event["body"])))
        client = self.client_for(str(integration.properties.get("CredentialsArn") or ""))
        await asyncio.to_thread(client.put_item, **_boto3_arguments(request))


def _boto3_arguments(request: dict[str, Any]) -> dict[str, Any]:
    """The action's wire JSON as boto3 arguments: boto3 takes binary attribute values as bytes and base64-encodes
    them itself, where the wire (and so the template) has them base64 already."""

    def value(attribute: Any) -> Any:
        if not isinstance(attribute, dict):
            return attribute
        if "B" in attribute:
            return {"B": base64.b64decode(attribute["B"])}
        if "BS" in attribute:
            return {"BS": [base64.b64decode(v) for v in attribute["BS"]]}
        if "M" in attribute:
            return {"M": {k: value(v) for k, v in attribute["M"].items()}}
        if "L" in attribute:
            return {"L": [value(v) for v in attribute["L"]]}
        return attribute

    item = request.get("Item")
    return {**request, "Item": {k: value(v) for k, v in item.items()}} if isinstance(item, dict) else request
