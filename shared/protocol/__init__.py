"""Pure Pusher protocol code: frame encoding, channel names and types. No I/O here."""
