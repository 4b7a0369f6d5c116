"""$connect, $disconnect and the asynchronous welcome (pusher:connection_established or a refusal)."""
