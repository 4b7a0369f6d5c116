"""sockless core: the Pusher Channels protocol engine, transport-agnostic, with I/O behind small protocols."""
