"""The OpenAPI 3.0 document of the REST API, built in code so the limits quoted match the defaults in use.

``python -m shared.http_api.openapi docs/openapi.json`` writes the shipped copy; a test checks the two
agree, and schemathesis checks the live server against this document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.settings import AppConfig
from shared.types import AppId

_DEFAULTS = AppConfig(id=AppId("defaults"), key="k", secret="s")

CHANNEL_CHARS = "-a-zA-Z0-9_=@,.;"
CHANNEL_PATTERN = f"^[{CHANNEL_CHARS}]+$"
EVENT_CHANNEL_PATTERN = f"^(#server-to-user-)?[{CHANNEL_CHARS}]+$"
SOCKET_ID_PATTERN = "^[0-9]+\\.[0-9]+$"


def _info_pattern(*attrs: str) -> str:
    one = "|".join(attrs)
    return f"^({one})(,({one}))*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_DESCRIPTIONS = {
    "400": "Malformed request: bad JSON, missing or mistyped field, invalid name, attribute not available for the "
    "channel type, too many channels or events. Nothing was published.",
    "401": "Missing or invalid signature, wrong auth_key, auth_timestamp more than 600 s away, or body_md5 that "
    "does not match the body.",
    "403": "The app is disabled.",
    "404": "Unknown app or path.",
    "413": "Event data over the app's limit (10 KB by default) or request body over the server's limit.",
    "429": "Over the per-IP limit (server setting `rate_limits.http_per_ip`) or the app's "
    "`max_backend_events_per_second` (writes) / `max_read_requests_per_second` (reads).",
    "503": "The store behind the server is unreachable; retry.",
}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for status, description in _ERROR_DESCRIPTIONS.items():
        response = _json(_ref("Error"), description)
        if status in ("429", "503"):
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
            }
        out[status] = response
    return out


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


def _schemas(app: AppConfig) -> dict[str, Any]:
    channel = {"type": "string", "minLength": 1, "maxLength": app.max_channel_name_length, "pattern": CHANNEL_PATTERN}
    event_channel = {**channel, "pattern": EVENT_CHANNEL_PATTERN}
    event_fields: dict[str, Any] = {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": app.max_event_name_length,
            "pattern": "^\\S+$",
            "description": "Event name: no whitespace.",
        },
        "data": {
            "type": "string",
            "description": f"Event data, usually JSON-encoded; at most {app.max_event_payload_in_kb:g} KB of UTF-8 "
            "(more answers 413).",
        },
        "socket_id": {
            "type": "string",
            "pattern": SOCKET_ID_PATTERN,
            "nullable": True,
            "description": "Exclude this connection from the recipients (null: no exclusion).",
        },
        "info": {
            "type": "string",
            "pattern": _info_pattern("user_count", "subscription_count"),
            "nullable": True,
            "description": "Attributes to return per channel: user_count (presence channels only), "
            "subscription_count (all but presence channels); null is the same as absent.",
        },
    }
    attributes = {
        "type": "object",
        "properties": {
            "user_count": {"type": "integer", "minimum": 0},
            "subscription_count": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What was wrong with the request."}},
            "additionalProperties": False,
        },
        "Empty": {"type": "object", "maxProperties": 0},
        "ChannelName": channel,
        "EventChannelName": event_channel,
        "ChannelAttributes": attributes,
        "Event": {
            "type": "object",
            "description": "One event for one or more channels: `channels` or `channel`, not both. Unknown fields "
            "are ignored.",
            "required": ["name", "data"],
            "properties": {
                **event_fields,
                "channels": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": app.max_event_channels_at_once,
                    "items": _ref("EventChannelName"),
                    "description": "Channels to publish to (an encrypted channel only on its own). "
                    "`#server-to-user-{id}` sends to a signed-in user.",
                },
                "channel": {**_ref("EventChannelName"), "description": "A single channel, instead of channels."},
            },
            "oneOf": [{"required": ["channels"]}, {"required": ["channel"]}],
        },
        "BatchEvent": {
            "type": "object",
            "required": ["name", "data", "channel"],
            "properties": {**event_fields, "channel": _ref("EventChannelName")},
        },
        "Batch": {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": app.max_event_batch_size,
                    "items": _ref("BatchEvent"),
                }
            },
        },
        "EventsResult": {
            "type": "object",
            "description": "`{}`, or with `info`: the requested attributes of every channel published to.",
            "properties": {"channels": {"type": "object", "additionalProperties": _ref("ChannelAttributes")}},
            "additionalProperties": False,
        },
        "BatchResult": {
            "type": "object",
            "description": "`{}`, or when any event asked for `info`: one entry per event, in request order.",
            "properties": {"batch": {"type": "array", "items": _ref("ChannelAttributes")}},
            "additionalProperties": False,
        },
        "Channels": {
            "type": "object",
            "required": ["channels"],
            "properties": {"channels": {"type": "object", "additionalProperties": _ref("ChannelAttributes")}},
            "additionalProperties": False,
        },
        "Channel": {
            "type": "object",
            "required": ["occupied"],
            "properties": {
                "occupied": {"type": "boolean"},
                "user_count": {"type": "integer", "minimum": 0},
                "subscription_count": {"type": "integer", "minimum": 0},
                "cache": {
                    "type": "object",
                    "nullable": True,
                    "description": "The cached last event (`null` when nothing is cached).",
                    "required": ["data", "ttl"],
                    "properties": {
                        "data": {"type": "string"},
                        "ttl": {"type": "integer", "minimum": 0, "description": "Seconds it stays cached."},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "Users": {
            "type": "object",
            "required": ["users"],
            "properties": {
                "users": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}},
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    }


_SIGNING = """Every request is signed like Pusher's: query parameters `auth_key` (the app key), `auth_timestamp`
(Unix seconds, within 600 s of the server clock), `auth_version=1.0`, `body_md5` (hex MD5 of the body; required
when the body is not empty, accepted and checked on GETs too) and `auth_signature` = hex HMAC-SHA256 with the app
secret of `METHOD\\nPATH\\nQUERY`, where QUERY is every other parameter with lower-cased keys, sorted by key,
joined as `key=value&...` without URL escaping, and PATH is the `/apps/...` path the client used."""


def build(app: AppConfig = _DEFAULTS) -> dict[str, Any]:
    """The document; ``app`` supplies the limits quoted (Pusher's defaults unless an app overrides them)."""
    app_id = _param(
        "app_id", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}, "The app id from the config."
    )
    channel_name = _param("channel_name", "path", _ref("ChannelName"), "Channel name.")
    user_id = _param(
        "user_id", "path", {"type": "string", "minLength": 1, "maxLength": 128, "pattern": CHANNEL_PATTERN}, "User id."
    )
    security: list[dict[str, list[str]]] = [
        {name: [] for name in ("auth_key", "auth_timestamp", "auth_version", "auth_signature")}
    ]
    auth_schemes = {
        name: {"type": "apiKey", "in": "query", "name": name, "description": description}
        for name, description in (
            ("auth_key", "The app key."),
            ("auth_timestamp", "Unix time in seconds; rejected when more than 600 s away."),
            ("auth_version", "Always 1.0."),
            ("auth_signature", "HMAC-SHA256 signature (see the API description)."),
            ("body_md5", "Hex MD5 of the request body: required when the body is not empty."),
        )
    }
    post_security = [{**security[0], "body_md5": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "sockless REST API",
            "version": "1.0.0",
            "description": "The Pusher Channels HTTP API as served by sockless.\n\n"
            + _SIGNING
            + '\n\nErrors are JSON `{"error": "..."}` with the status that names the problem; a request that '
            "fails any check publishes nothing.",
        },
        "servers": [{"url": "http://127.0.0.1:6001"}],
        "security": security,
        "paths": {
            "/apps/{app_id}/events": {
                "post": {
                    "operationId": "triggerEvent",
                    "summary": "Publish an event to one or more channels",
                    "parameters": [app_id],
                    "security": post_security,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Event")}}},
                    "responses": _responses(_json(_ref("EventsResult"), "Published.")),
                }
            },
            "/apps/{app_id}/batch_events": {
                "post": {
                    "operationId": "triggerBatch",
                    "summary": f"Publish up to {app.max_event_batch_size} events in one call",
                    "description": "Every event is validated before any is published.",
                    "parameters": [app_id],
                    "security": post_security,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Batch")}}},
                    "responses": _responses(_json(_ref("BatchResult"), "Published.")),
                }
            },
            "/apps/{app_id}/channels": {
                "get": {
                    "operationId": "listChannels",
                    "summary": "Occupied channels",
                    "parameters": [
                        app_id,
                        _param(
                            "filter_by_prefix",
                            "query",
                            {
                                "type": "string",
                                "maxLength": app.max_channel_name_length,
                                "pattern": f"^[{CHANNEL_CHARS}]*$",
                            },
                            "Only channels whose name starts with this.",
                        ),
                        _param(
                            "info",
                            "query",
                            {"type": "string", "pattern": _info_pattern("user_count", "subscription_count")},
                            "user_count (only with filter_by_prefix=presence-...), subscription_count (not with "
                            "filter_by_prefix=presence-...; omitted for presence channels).",
                        ),
                    ],
                    "responses": _responses(_json(_ref("Channels"), "Occupied channels and requested attributes.")),
                }
            },
            "/apps/{app_id}/channels/{channel_name}": {
                "get": {
                    "operationId": "getChannel",
                    "summary": "One channel's state",
                    "parameters": [
                        app_id,
                        channel_name,
                        _param(
                            "info",
                            "query",
                            {"type": "string", "pattern": _info_pattern("user_count", "subscription_count", "cache")},
                            "user_count (presence channels), subscription_count (all but presence), cache (cache "
                            "channels); an attribute not available for the channel's type answers 400.",
                        ),
                    ],
                    "responses": _responses(_json(_ref("Channel"), "The channel's state.")),
                }
            },
            "/apps/{app_id}/channels/{channel_name}/users": {
                "get": {
                    "operationId": "getUsers",
                    "summary": "Members of a presence channel (400 for other channels)",
                    "parameters": [app_id, channel_name],
                    "responses": _responses(_json(_ref("Users"), "The channel's members.")),
                }
            },
            "/apps/{app_id}/users/{user_id}/terminate_connections": {
                "post": {
                    "operationId": "terminateUserConnections",
                    "summary": "Close every connection signed in as this user",
                    "parameters": [app_id, user_id],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("Empty")}},
                    },
                    "responses": _responses(_json(_ref("Empty"), "Connections are being closed.")),
                }
            },
        },
        "components": {"schemas": _schemas(app), "securitySchemes": auth_schemes},
    }


def render(app: AppConfig = _DEFAULTS) -> str:
    return json.dumps(build(app), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
