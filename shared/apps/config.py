"""``ConfigAppStore``: apps listed in the settings (config file or environment)."""

from __future__ import annotations

from collections.abc import Iterable

from shared.settings import AppConfig
from shared.types import AppId


class ConfigAppStore:
    def __init__(self, apps: Iterable[AppConfig]) -> None:
        self._by_key = {app.key: app for app in apps}
        self._by_id = {app.id: app for app in self._by_key.values()}

    async def by_key(self, key: str) -> AppConfig | None:
        return self._by_key.get(key)

    async def by_id(self, app_id: str) -> AppConfig | None:
        return self._by_id.get(AppId(app_id))

    def all(self) -> list[AppConfig]:
        return list(self._by_id.values())

    async def close(self) -> None:
        return None

    async def check_health(self) -> bool:
        return True
