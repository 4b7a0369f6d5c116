"""Channel stores: where connections, subscriptions, presence members and cache payloads live."""
