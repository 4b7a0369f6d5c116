"""``POST /users/{user_id}/terminate_connections``: close every signed-in connection of a user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.errors import HttpError
from shared.http_api.params import parse_json_object
from shared.protocol.channels import valid_user_id

if TYPE_CHECKING:
    from shared.engine.core import Engine
    from shared.settings import AppConfig


async def terminate_connections(engine: Engine, app: AppConfig, user_id: str, body: bytes) -> dict[str, Any]:
    """Pusher takes no parameters here: the body is empty or ``{}`` (what the Node SDK sends)."""
    if not valid_user_id(user_id):
        raise HttpError(400, "Invalid user id: 1-128 characters of A-Z a-z 0-9 _-=@,.;")
    if body and parse_json_object(body):  # whitespace alone is not JSON: 400, like any other bad body
        raise HttpError(400, "terminate_connections takes no parameters")
    await engine.terminate_user(app, user_id)
    return {}
