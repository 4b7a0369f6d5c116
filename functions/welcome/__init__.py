"""welcome: the first frame (pusher:connection_established or a refusal), invoked by $connect."""
