"""The emulator's terminal without CloudWatch EMF documents (``--show-emf`` keeps them).

On AWS, Powertools prints one EMF JSON document per invocation and app to stdout, and CloudWatch Logs turns it
into metrics. Run by the emulator, the same prints reach the developer's terminal, one per client frame. The
functions still write them (they behave as on AWS); this filter drops them on their way to the terminal.
"""

from __future__ import annotations

import threading
from typing import Any, TextIO


def is_emf(line: str) -> bool:
    """An EMF document: a JSON object whose ``_aws`` member holds the ``CloudWatchMetrics`` directive."""
    return line.startswith("{") and '"_aws":{' in line and '"CloudWatchMetrics"' in line


class HideEmf:
    """A stdout that passes every line but EMF documents. Lines are assembled per thread, because
    ``print`` writes the text and its newline in two calls and Lambda containers are threads here."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._pending = threading.local()

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "") + text
        *lines, rest = pending.split("\n")
        self._pending.text = rest
        kept = [line for line in lines if not is_emf(line)]
        if kept:
            self.target.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        """A partial line is written out unless it may be the start of an EMF document."""
        pending: str = getattr(self._pending, "text", "")
        if pending and not pending.startswith("{"):
            self.target.write(pending)
            self._pending.text = ""
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the terminal's own
        return getattr(self.target, name)
