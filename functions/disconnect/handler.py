"""``$disconnect``: forget the connection, its subscriptions and presence entries (with their webhooks)."""

from __future__ import annotations

from typing import Any

from functions.runtime import container, entry

OK = {"statusCode": 200}


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Idempotent: a second ``$disconnect``, or one for a connection the sweep already removed, is a no-op."""
    current = container(event)
    current.run(current.connections.close(event["requestContext"]["connectionId"]))
    return OK
