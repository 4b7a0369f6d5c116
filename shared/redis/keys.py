"""``RedisKeys``: every Redis key and pub/sub channel name sockless uses, built in one place from the prefix.

Keys under an app's prefix ``P`` = ``<prefix>:{<app_id>}:`` (the ``{app_id}`` hash tag puts all of an app's
keys in one cluster slot, which lets a store script touch them together on Redis Cluster and ElastiCache
Serverless). The store's Lua scripts (``shared/store/redis_scripts.py``) get ``P`` as their one key and
append the same suffixes:

- ``P conns``        hash  socket id -> connection record (JSON of strings: at, n(ode), c(onnectionId), u(ser),
  d(ata), w(atchlist))
- ``P seen``         zset  socket id -> last sign of life (seconds), for the Lambda path's stale sweep
- ``P cid``          hash  socket id -> API Gateway connectionId (Lambda path only)
- ``P sn``           hash  socket id -> node id (routing for cross-node fan-out; local server only)
- ``P node:<node>``  set   the node's socket ids (what a peer removes when the node's lease expires)
- ``P ch:<channel>`` hash  socket id -> "" or "=<user id>" (the presence member the socket joined as)
- ``P mc:<channel>`` hash  user id -> number of the user's sockets in the presence channel
- ``P mi:<channel>`` hash  user id -> user_info JSON
- ``P sc:<socket>``  set   the socket's channels
- ``P chans``        set   occupied channels
- ``P u:<user>``     set   the user's signed-in sockets
- ``P w:<user>``     set   sockets whose watchlist holds the user
- ``P cache:<channel>`` string, the last event of a cache channel, with its own TTL

Outside the apps' slots, written by separate commands: ``<prefix>:cid:<connectionId>`` (-> app and socket
id, for ``$disconnect`` on Lambda), ``<prefix>:apps`` (the apps the sweep visits), and the cluster's
``<prefix>:nodes``, ``<prefix>:lease:<node>``, ``<prefix>:reap:<node>``, ``<prefix>:nodeapps:<node>`` and
pub/sub channel ``<prefix>:node:<node>``. The rate limiter counts in ``<prefix>:rl:<key>``; the webhook
queue keeps its keys under ``<prefix>:{webhooks}:`` (``shared/webhooks/redis.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.types import AppId, ChannelName, UserId


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = "sockless"

    # -- an app's keys (one cluster slot) ---------------------------------------------------------------

    def app(self, app_id: AppId) -> str:
        """``<prefix>:{<app_id>}:``: the store scripts' one key, which they build the app's other keys from."""
        return f"{self.prefix}:{{{app_id}}}:"

    def connections(self, app_id: AppId) -> str:
        return self.app(app_id) + "conns"

    def seen(self, app_id: AppId) -> str:
        return self.app(app_id) + "seen"

    def connection_ids(self, app_id: AppId) -> str:
        return self.app(app_id) + "cid"

    def socket_nodes(self, app_id: AppId) -> str:
        return self.app(app_id) + "sn"

    def node_sockets(self, app_id: AppId, node_id: str) -> str:
        return self.app(app_id) + "node:" + node_id

    def channel(self, app_id: AppId, channel: ChannelName) -> str:
        return self.app(app_id) + "ch:" + channel

    def member_counts(self, app_id: AppId, channel: ChannelName) -> str:
        return self.app(app_id) + "mc:" + channel

    def member_infos(self, app_id: AppId, channel: ChannelName) -> str:
        return self.app(app_id) + "mi:" + channel

    def user_sockets(self, app_id: AppId, user_id: UserId) -> str:
        return self.app(app_id) + "u:" + user_id

    def watchers(self, app_id: AppId, user_id: UserId) -> str:
        return self.app(app_id) + "w:" + user_id

    def cache(self, app_id: AppId, channel: ChannelName) -> str:
        return self.app(app_id) + "cache:" + channel

    # -- global keys -----------------------------------------------------------------------------------

    def connection(self, connection_id: str) -> str:
        """An API Gateway connectionId -> ``<app>\\n<socket>``."""
        return f"{self.prefix}:cid:{connection_id}"

    @property
    def apps(self) -> str:
        return f"{self.prefix}:apps"

    # -- the local-server cluster ----------------------------------------------------------------------

    @property
    def nodes(self) -> str:
        return f"{self.prefix}:nodes"

    def lease(self, node_id: str) -> str:
        return f"{self.prefix}:lease:{node_id}"

    def reap_lock(self, node_id: str) -> str:
        return f"{self.prefix}:reap:{node_id}"

    def node_apps(self, node_id: str) -> str:
        """The apps a node has held sockets of; one per node, outside any app's slot."""
        return f"{self.prefix}:nodeapps:{node_id}"

    def node_channel(self, node_id: str) -> str:
        """The pub/sub channel a node listens on (sharded pub/sub on Redis 7+)."""
        return f"{self.prefix}:node:{node_id}"

    # -- other drivers ---------------------------------------------------------------------------------

    def rate_limit(self, key: str) -> str:
        return f"{self.prefix}:rl:{key}"

    @property
    def webhook_queue(self) -> str:
        """The webhook queue's key prefix; one hash tag, so its scripts may touch every key on Redis Cluster."""
        return f"{self.prefix}:{{webhooks}}:"
