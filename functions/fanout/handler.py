"""``fanout``: one chunk of a broadcast too large for one invocation, handed on by the sender."""

from __future__ import annotations

from typing import Any

from functions.runtime import Container, container, entry
from shared.sender.apigateway import ApiGatewaySender, FanoutChunk


async def _fanout(current: Container, event: dict[str, Any]) -> dict[str, int]:
    services = current.services
    chunk = FanoutChunk.from_dict(event)
    app = await services.apps.by_id(chunk.app_id)
    sender = services.sender
    if app is None or not isinstance(sender, ApiGatewaySender):
        return {"sent": 0, "gone": 0, "failed": len(chunk.socket_ids)}
    delivery = await sender.deliver(chunk)
    services.engine.count_sent(app.id, delivery.sent, delivery.sent * len(chunk.frame), delivery.failed)
    await services.engine.drop_gone(app, delivery.gone)
    return {"sent": delivery.sent, "gone": len(delivery.gone), "failed": delivery.failed}


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """One chunk of a broadcast too large for one invocation, handed on by the sender (async invoke): post
    it, and clean up the sockets that answered 410, like any broadcast."""
    current = container()
    return current.run(_fanout(current, event))
