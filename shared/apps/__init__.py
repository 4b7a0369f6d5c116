"""App stores: where app definitions (keys, secrets, limits, webhooks) come from."""
