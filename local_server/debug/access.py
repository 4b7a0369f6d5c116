"""Who may use the debug console (see ``local_server/debug/__init__.py``): loopback, app secrets, the admin token."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Mapping

from aiohttp import web

from shared.settings import AppConfig

COOKIE = "sockless_debug"
SESSION_SECONDS = 12 * 3600
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether a listen address or a ``Host`` name can only be reached from this machine."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Access:
    """The app ids a request may see: every app on an open (loopback) listener asked by a loopback name;
    else those its bearer token or session cookie grants (an app's secret: that app; the admin token: all)."""

    def __init__(self, apps: Mapping[str, AppConfig], *, open_listener: bool, admin_token: str | None) -> None:
        self.apps = apps
        self.open_listener = open_listener
        self.admin_token = admin_token or None
        self._session_key = secrets.token_bytes(32)  # sessions end with the process

    def token_scope(self, token: str) -> frozenset[str]:
        if self.admin_token is not None and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return frozenset(self.apps)
        # Every secret is compared, so the time taken does not tell which app (if any) came close.
        matched = [app.id for app in self.apps.values() if hmac.compare_digest(token.encode(), app.secret.encode())]
        return frozenset(matched)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._session_key, payload.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, scope: frozenset[str]) -> str:
        # App ids are [A-Za-z0-9_.-]: "," and "|" cannot occur in them.
        payload = f"{','.join(sorted(scope))}|{int(time.time()) + SESSION_SECONDS}"
        return f"{payload}|{self._sign(payload)}"

    def _cookie_scope(self, value: str) -> frozenset[str]:
        payload, _, mac = value.rpartition("|")
        ids, _, expires = payload.partition("|")
        if not payload or not hmac.compare_digest(mac.encode(), self._sign(payload).encode()):
            return frozenset()
        if not expires.isdigit() or int(expires) < time.time():
            return frozenset()
        return frozenset(ids.split(",")) & frozenset(self.apps)

    def scope(self, request: web.Request) -> frozenset[str]:
        """The app ids this request may see (empty: none, refuse)."""
        if self.open_listener and is_loopback(request.url.host or ""):
            return frozenset(self.apps)
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return self.token_scope(auth[7:].strip())
        cookie = request.cookies.get(COOKIE)
        return self._cookie_scope(cookie) if cookie else frozenset()


def same_origin(request: web.Request) -> bool:
    """Console writes from another site are refused (CSRF): a present ``Origin`` must be this host."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"
