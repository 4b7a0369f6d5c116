"""Rate limiters: client events per connection, REST calls per app and per IP, connections per IP."""
