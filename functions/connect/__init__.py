"""$connect: check the app, record the connection, invoke welcome."""
