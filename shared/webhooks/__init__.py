"""Webhooks: events the engine emits, the queue they travel on, and their delivery."""
