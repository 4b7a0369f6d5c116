"""$disconnect: forget the connection and everything it held."""
