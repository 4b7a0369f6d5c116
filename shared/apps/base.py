"""The ``AppStore`` protocol."""

from __future__ import annotations

from typing import Protocol

from shared.settings import AppConfig


class AppStore(Protocol):
    async def by_key(self, key: str) -> AppConfig | None: ...

    async def by_id(self, app_id: str) -> AppConfig | None: ...

    async def close(self) -> None: ...

    async def check_health(self) -> bool: ...
