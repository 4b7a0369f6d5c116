"""fanout: one chunk of a large broadcast, invoked asynchronously by the sender."""
