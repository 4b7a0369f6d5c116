"""What every Redis driver shares: the client (``client``), script batching (``batching``), error translation
(``errors``), key names (``keys``), and a cluster node's registry (``nodes``) and subscription index (``node_index``).

The drivers themselves live with their kind: ``store/redis.py``, ``limits/redis.py``, ``webhooks/redis.py``,
``sender/redis.py``. See docs/redis.md.
"""
