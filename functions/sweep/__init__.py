"""The scheduled sweep of connections whose $disconnect never came."""
