"""$default: every client frame."""
