"""The protocol engine: connect, frames, disconnect and publishing, over the driver protocols only."""

from shared.engine.core import Engine

__all__ = ["Engine"]
