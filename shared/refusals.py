"""Refusals the operator can see: one structured, rate-limited log line per refusal, a metric by code.

Every answer that turns a client away goes through :func:`report`: a WebSocket handshake refused
(``kind="websocket"``), a client frame refused with ``pusher:error`` (``"frame"``), a REST call answered
4xx/5xx (``"rest"``), an HTTP request refused before routing (``"http"``: malformed, too slow, too many
connections from one address). The line names the app, the socket or client address, the code and the
reason, as ``key=value`` pairs; never a secret or a signature (reasons are the protocol's own messages,
and anything that looks like an HMAC is masked anyway). Lines are rate-limited per kind and code
(:mod:`shared.ratelog`), so a flood of bad requests costs one line per interval; the metric
(``sockless_refusals{app_id,kind,code}`` on the local server) counts every one.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from shared.metrics.base import Metrics
from shared.ratelog import RateLimitedLog, clean

RefusalKind = Literal["websocket", "frame", "rest", "http"]

log = RateLimitedLog(logging.getLogger("sockless.refused"))
_HMAC = re.compile(r"\b[0-9a-fA-F]{64}\b")


def report(
    metrics: Metrics,
    *,
    kind: RefusalKind,
    app_id: str | None,
    code: int | None,
    reason: str,
    socket_id: str | None = None,
    client: str | None = None,
    channel: str | None = None,
) -> None:
    """Count the refusal and log it (at most one line per ``kind`` and ``code`` per interval)."""
    metrics.refused(app_id or "-", kind, code)
    fields = [f"kind={kind}", f"app={clean(app_id or '-', 64)}"]
    if socket_id is not None:
        fields.append(f"socket={clean(socket_id, 32)}")
    if client is not None:
        fields.append(f"client={clean(client, 64)}")
    if channel is not None:
        fields.append(f"channel={clean(channel, 100)}")
    fields.append(f"code={code if code is not None else '-'}")
    fields.append(f"reason={clean(_HMAC.sub('[redacted]', reason))}")
    log.info(f"{kind}:{code}", "refused %s", " ".join(fields))
