"""``DynamoDBRateLimiter``: fixed windows as one DynamoDB item per key, counted with conditional ``ADD``.

A window starts at its first hit (like the memory and Redis limiters), so a client that keeps sending
while limited gets through once the window it opened is over. One hit is one conditional write:
``ADD n 1`` only while the window is open and under the limit. When that fails, the item's old value
(``ReturnValuesOnConditionCheckFailure``) says why: over the limit (refused, not counted) or window over,
in which case a conditional put opens the next window; of concurrent openers exactly one wins and the
others count into its window. ``ttl`` lets DynamoDB collect windows nobody hits any more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from shared.aws_io import AWS_ERRORS, AwsCaller, error_code, unavailable
from shared.dynamodb.items import key as item_key
from shared.dynamodb.items import n
from shared.errors import StoreUnavailable

MAX_ATTEMPTS = 5


class DynamoDBRateLimiter:
    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_workers: int = 8,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table_name
        self._aws = AwsCaller(
            "dynamodb",
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            max_workers=max_workers,
            executor=executor,
            client_config={"retries": {"mode": "standard", "max_attempts": 4}},
        )
        self._clock = clock

    async def _write(self, operation: str, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
        """``(True, {})`` when the write happened, ``(False, item as it was)`` when its condition failed."""
        try:
            await self._aws.call(operation, TableName=self.table, **kwargs)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False, getattr(exc, "response", {}).get("Item") or {}
            raise unavailable(exc, f"DynamoDB {operation}") from exc
        return True, {}

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        window = item_key(f"rl#{key}", "window")
        names = {"#n": "n", "#until": "until"}
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            counted, old = await self._write(
                "update_item",
                Key=window,
                UpdateExpression="ADD #n :one",
                ConditionExpression="#until > :now AND #n < :limit",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":one": n(1), ":now": n(now), ":limit": n(limit)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            if counted:
                return True
            if old and float(old["until"]["N"]) > now:
                return False  # the open window is full; a refused hit is not counted
            now = self._clock()  # the window starts now, not when the failed update was sent
            until = now + window_seconds
            opened, _ = await self._write(
                "put_item",
                Item={**window, "n": n(1), "until": n(until), "ttl": n(int(until) + 60)},
                ConditionExpression="attribute_not_exists(#until) OR #until <= :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":now": n(now)},
            )
            if opened:
                return True
            # Another hit opened the next window first: count into it.
        raise StoreUnavailable(f"DynamoDB rate limiter: window for {key!r} kept changing")

    async def close(self) -> None:
        await self._aws.close()

    async def check_health(self) -> bool:
        try:
            await self._aws.call("get_item", TableName=self.table, Key=item_key("health", "health"))
        except AWS_ERRORS:
            return False
        return True
