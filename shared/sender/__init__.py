"""Senders: the only way a frame leaves the engine."""
