"""The self-hosted sockless server: aiohttp in front of the shared core."""
