"""The Pusher REST API behind an HTTP API (payload v2)."""
