"""``DynamoDBAppStore``: apps kept in a DynamoDB table, cached in the container for ``cache_seconds``.

One item per app holds the ``AppConfig`` fields as plain DynamoDB attributes (readable and editable in
the console), plus a pointer item per key for ``by_key``; :meth:`DynamoDBAppStore.put_app` writes both
in one transaction. Keys start with ``cfg#``, so the apps may share the channel store's table.
Lookups are cached per container, misses too (briefly), so a flood of connections with an unknown key
costs one read per key and container, not one per connection. A changed app reaches warm containers
within ``cache_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from decimal import Decimal
from typing import Any

from shared.aws_io import AWS_ERRORS, AwsCaller, unavailable
from shared.errors import StoreUnavailable
from shared.settings import AppConfig

APP_SK = "app"


def _app_key(app_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"cfg#app#{app_id}"}, "sk": {"S": APP_SK}}


def _pointer_key(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"cfg#key#{key}"}, "sk": {"S": APP_SK}}


def _to_dynamo(value: Any) -> Any:
    """JSON-shaped values as boto3's serializer wants them (it refuses floats: numbers become Decimal)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value


class DynamoDBAppStore:
    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        cache_seconds: float = 60.0,
        missing_cache_seconds: float = 5.0,
        max_workers: int = 4,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table_name
        self._aws = AwsCaller(
            "dynamodb",
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            max_workers=max_workers,
            executor=executor,
        )
        self.cache_seconds = cache_seconds
        self.missing_cache_seconds = missing_cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[AppConfig | None, float]] = {}

    async def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = (await self._aws.call("get_item", TableName=self.table, Key=key)).get("Item")
        except AWS_ERRORS as exc:
            raise unavailable(exc, "DynamoDB GetItem (apps)") from exc
        return item

    def _cached(self, kind: str, value: str) -> tuple[bool, AppConfig | None]:
        entry = self._cache.get((kind, value))
        if entry is None or entry[1] <= self._clock():
            return False, None
        return True, entry[0]

    def _remember(self, kind: str, value: str, app: AppConfig | None) -> None:
        ttl = self.cache_seconds if app is not None else self.missing_cache_seconds
        self._cache[(kind, value)] = (app, self._clock() + ttl)
        if app is not None:
            other = ("key", app.key) if kind == "id" else ("id", app.id)
            self._cache[other] = (app, self._clock() + ttl)

    async def _load(self, app_id: str) -> AppConfig | None:
        item = await self._get(_app_key(app_id))
        if item is None:
            return None
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        data = {k: _from_dynamo(deserializer.deserialize(v)) for k, v in item.items() if k not in ("pk", "sk")}
        try:
            return AppConfig.model_validate(data)
        except ValueError as exc:  # pydantic's ValidationError: a hand-edited item gone wrong
            raise StoreUnavailable(f"app {app_id!r} in table {self.table} is not a valid app: {exc}") from exc

    async def by_id(self, app_id: str) -> AppConfig | None:
        hit, app = self._cached("id", app_id)
        if hit:
            return app
        app = await self._load(app_id)
        self._remember("id", app_id, app)
        return app

    async def by_key(self, key: str) -> AppConfig | None:
        hit, app = self._cached("key", key)
        if hit:
            return app
        pointer = await self._get(_pointer_key(key))
        app = await self._load(pointer["app_id"]["S"]) if pointer is not None else None
        if app is not None and app.key != key:  # the key was rotated after the pointer was read
            app = None
        self._remember("key", key, app)
        return app

    async def put_app(self, app: AppConfig) -> None:
        """Create or replace an app and its key pointer atomically (drops the old key's pointer).

        For provisioning scripts, tests and the emulator; the Lambda handlers only read.
        """
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        data = _to_dynamo(app.model_dump(mode="json", by_alias=True, exclude_none=True))
        item = {**_app_key(app.id), **{k: serializer.serialize(v) for k, v in data.items()}}
        items: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table, "Item": item}},
            {"Put": {"TableName": self.table, "Item": {**_pointer_key(app.key), "app_id": {"S": app.id}}}},
        ]
        previous = await self._load(app.id)
        if previous is not None and previous.key != app.key:
            items.append({"Delete": {"TableName": self.table, "Key": _pointer_key(previous.key)}})
        try:
            await self._aws.call("transact_write_items", TransactItems=items)
        except AWS_ERRORS as exc:
            raise unavailable(exc, "DynamoDB TransactWriteItems (apps)") from exc
        self._cache.clear()

    async def delete_app(self, app_id: str) -> None:
        previous = await self._load(app_id)
        items: list[dict[str, Any]] = [{"Delete": {"TableName": self.table, "Key": _app_key(app_id)}}]
        if previous is not None:
            items.append({"Delete": {"TableName": self.table, "Key": _pointer_key(previous.key)}})
        try:
            await self._aws.call("transact_write_items", TransactItems=items)
        except AWS_ERRORS as exc:
            raise unavailable(exc, "DynamoDB TransactWriteItems (apps)") from exc
        self._cache.clear()

    async def close(self) -> None:
        await self._aws.close()

    async def check_health(self) -> bool:
        try:
            await self._get(_app_key("health"))
        except StoreUnavailable:
            return False
        return True
