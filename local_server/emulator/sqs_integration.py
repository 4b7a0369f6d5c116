"""API Gateway's AWS integration to SQS ``SendMessage``, emulated: the ordered frames queue's ``$default``
(cdk/components/frames.py, docs/aws.md "Frames of one connection in order").

API Gateway renders the route's request template into the body of a POST to SQS's query API
(``arn:aws:apigateway:REGION:sqs:path/ACCOUNT/QUEUE``), signed with the integration's credentials role. Here
the template is rendered with the subset of the mapping-template language it uses (``$context.NAME``,
``$input.body``, ``$util.urlEncode(...)``; anything else is left as written and named at start-up), and the
resulting ``SendMessage`` goes to moto signed as that role, so IAM decides as it would on AWS.

One connection's frames are sent one after another, in the order they arrived. AWS does not document
whether API Gateway waits for one integration request of a connection before starting the next; it receives
the frames in order over one TCP connection, and this emulation assumes it sends them in that order
(docs/aws.md says what happens if it does not). After each send the queue's event source mapping is woken,
as a long poll returns when a message arrives.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from local_server.emulator import events
from local_server.emulator.template import Integration
from local_server.emulator.websocket import Socket, WebSocketApi

log = logging.getLogger("sockless.emulator")

_URI = re.compile(r"^arn:aws:apigateway:[^:]+:sqs:path/(?P<account>[^/]+)/(?P<queue>[^/]+)$")
_VARIABLE = re.compile(r"\$util\.urlEncode\(\$(?P<encoded>[A-Za-z.]+)\)|\$(?P<plain>context\.[A-Za-z.]+|input\.body)")
_UNSUPPORTED = re.compile(r"\$(?!context\.|input\.body|util\.urlEncode\()[A-Za-z{]")


def render(template: str, context: dict[str, Any], body: str) -> str:
    """The request template with ``$context.X``, ``$input.body`` and ``$util.urlEncode(...)`` of them
    replaced (API Gateway developer guide, "WebSocket API mapping template reference")."""

    def value(name: str) -> str:
        if name == "input.body":
            return body
        return str(context.get(name.removeprefix("context."), ""))

    def substitute(match: re.Match[str]) -> str:
        if match.group("encoded"):
            return quote(value(match.group("encoded")), safe="")
        return value(match.group("plain"))

    return _VARIABLE.sub(substitute, template)


def send_message_arguments(form: str, queue_url: str) -> dict[str, Any]:
    """A rendered ``Action=SendMessage&...`` form as boto3 ``send_message`` arguments."""
    params = dict(parse_qsl(form, keep_blank_values=True))
    if params.pop("Action", None) != "SendMessage":
        raise ValueError("only Action=SendMessage is emulated")
    arguments: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": params.pop("MessageBody", "")}
    for name in ("MessageGroupId", "MessageDeduplicationId", "DelaySeconds"):
        if name in params:
            arguments[name] = int(params.pop(name)) if name == "DelaySeconds" else params.pop(name)
    attributes: dict[str, dict[str, str]] = {}
    index = 1
    while f"MessageAttribute.{index}.Name" in params:
        prefix = f"MessageAttribute.{index}."
        data_type = params.get(prefix + "Value.DataType", "String")
        attributes[params[prefix + "Name"]] = {
            "DataType": data_type,
            "StringValue": params.get(prefix + "Value.StringValue", ""),
        }
        index += 1
    if attributes:
        arguments["MessageAttributes"] = attributes
    return arguments


class InOrder:
    """A connection's frames handed to an AWS integration one at a time, in arrival order: what API Gateway's
    one TCP connection per client gives (docs/aws.md "Frames of one connection in order"). A failed call
    answers the client as API Gateway does for a failed integration."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(
        self,
        api: WebSocketApi,
        socket: Socket,
        body: str | bytes,
        key: str,
        deliver: Callable[[dict[str, Any]], Awaitable[None]],
        what: str,
    ) -> None:
        connection_id = socket.conn.connection_id
        # Taken before the first await: frames of a connection acquire it in arrival order.
        lock = self._locks.setdefault(connection_id, asyncio.Lock())
        async with lock:
            event = events.ws_message(socket.conn, body, key)
            try:
                await deliver(event)
            except Exception:
                log.exception("%s failed for %s", what, connection_id)
                await api.internal_error(socket, event)
        if not lock.locked() and socket.disconnected:
            self._locks.pop(connection_id, None)


class SqsIntegration:
    """Runs ``AWS`` integrations whose URI is SQS's query API; ``client_for(role_arn)`` gives an SQS client
    signing as the integration's credentials role, ``queue_url(account, name)`` the queue's moto URL and
    ``notify(queue_url)`` wakes the queue's event source mapping."""

    def __init__(
        self,
        *,
        client_for: Callable[[str], Any],
        queue_url: Callable[[str, str], str],
        notify: Callable[[str], None],
    ) -> None:
        self.client_for = client_for
        self.queue_url = queue_url
        self.notify = notify
        self._in_order = InOrder()

    @staticmethod
    def unsupported(integration: Integration) -> list[str]:
        notes = []
        if not _URI.match(integration.uri or ""):
            notes.append(f"AWS integration {integration.logical_id}: only SQS (sqs:path/ACCOUNT/QUEUE) is emulated")
        for template in integration.request_templates.values():
            if _UNSUPPORTED.search(template):
                notes.append(
                    f"AWS integration {integration.logical_id}: template variables beyond $context, "
                    "$input.body and $util.urlEncode are sent as written"
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
            lambda event: self._send(integration, event),
            f"SQS integration {integration.logical_id}",
        )

    async def _send(self, integration: Integration, event: dict[str, Any]) -> None:
        match = _URI.match(integration.uri or "")
        if match is None:
            raise ValueError(f"not an SQS integration URI: {integration.uri}")
        selection = (integration.template_selection or "\\$default").replace("\\", "")
        template = integration.request_templates.get(selection) or integration.request_templates.get("$default", "")
        # A binary frame's body is base64 text here: what the integration's CONVERT_TO_TEXT would send.
        form = render(template, event["requestContext"], str(event["body"]))
        queue_url = self.queue_url(match.group("account"), match.group("queue"))
        role = str(integration.properties.get("CredentialsArn") or "")
        client = self.client_for(role)
        await asyncio.to_thread(client.send_message, **send_message_arguments(form, queue_url))
        self.notify(queue_url)
