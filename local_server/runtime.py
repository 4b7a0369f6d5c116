"""Start, run and gracefully stop the local server (SIGTERM: stop accepting, close 4200, flush webhooks)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from local_server.banner import banner
from local_server.cluster import ClusterCollector, ClusterNode, default_node_id
from local_server.guard import GuardedSite, QuietServerLogger
from local_server.server import Handlers, create_app
from local_server.transport import Cork, CorkCollector, WsTransport
from shared.debug.tap import DebugTap
from shared.debug.webhooks import tap_targets
from shared.limits.memory import MemoryRateLimiter
from shared.metrics.prometheus import PrometheusMetrics
from shared.redis.client import connect_redis
from shared.redis.node_index import NodeIndex
from shared.redis.nodes import RedisNodeRegistry
from shared.sender.local import LocalSender
from shared.sender.redis import RedisSender
from shared.services import Clients, DriverError, Services, build_services
from shared.settings import Settings
from shared.store.redis import RedisChannelStore
from shared.webhooks.dispatcher import WebhookDispatcher
from shared.webhooks.targets import create_targets

log = logging.getLogger("sockless")


def _metrics_app(metrics: PrometheusMetrics) -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


class LocalServer:
    """The local server's composition: the one place its services are built."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = PrometheusMetrics()
        # Every broadcast's writes are queued as one entry; slow sockets are bounded (local_server/transport.py).
        limits = settings.transport
        self.cork = Cork(
            max_socket=limits.max_write_buffer_kb * 1024,
            budget=limits.write_budget_mb * 1024 * 1024,
            metrics=self.metrics,
        )
        self.metrics.registry.register(CorkCollector(self.cork))
        tap = DebugTap() if settings.debug_console else None
        self.cluster: ClusterNode | None = None
        self.sender: LocalSender
        self.services: Services
        if settings.store.driver == "redis":
            self.services, self.cluster = self._cluster_node(settings, tap)
            self.sender = self.cluster.sender
        else:
            self.sender = LocalSender(self.cork.broadcast)
            self.services = build_services(
                settings, sender=self.sender, metrics=self.metrics, tap=tap, count_connections=False
            )
        self._runners: list[web.AppRunner] = []
        self.handlers = Handlers()
        self._http: aiohttp.ClientSession | None = None
        self._dispatcher: WebhookDispatcher | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self.port = settings.port

    def _cluster_node(self, settings: Settings, tap: DebugTap | None) -> tuple[Services, ClusterNode]:
        """A node of a Redis-backed cluster (docs/redis.md): one Redis client for every driver; the node's
        registry and subscription index, shared by the store (which keeps them) and the sender (which routes
        frames to peer nodes by them); the services over those; the node that runs its lease, reaper and
        reconciliation over all of it."""
        store_settings = settings.store
        if not store_settings.url:
            raise DriverError("store.url is required by the redis driver")
        client = connect_redis(store_settings.url, cluster_mode=store_settings.cluster_mode)
        prefix = store_settings.prefix
        node_id = store_settings.node_id or default_node_id()
        registry = RedisNodeRegistry(client, node_id=node_id, prefix=prefix)
        index = NodeIndex()
        store = RedisChannelStore(
            client, prefix=prefix, node=registry, index=index, ttl_seconds=store_settings.ttl_seconds
        )
        sender = RedisSender(
            client,
            node_id=node_id,
            index=index,
            locator=registry,
            prefix=prefix,
            fanout=self.cork.broadcast,
            replay_seconds=store_settings.replay_seconds,
            replay_bytes=store_settings.replay_mb * 1024 * 1024,
        )
        services = build_services(
            settings,
            sender=sender,
            clients=Clients(redis=client),
            metrics=self.metrics,
            tap=tap,
            store=store,
            connection_limiter=MemoryRateLimiter(),  # a socket lives on one node: see Engine
            count_connections=False,  # server.websocket counts this node's open sockets
        )
        node = ClusterNode(
            store_settings,
            client=client,
            registry=registry,
            index=index,
            store=store,
            sender=sender,
            engine=services.engine,
        )
        self.metrics.registry.register(ClusterCollector(node, queue=services.queue, limiter=services.limiter))
        return services, node

    async def start(self) -> None:
        if self.cluster is not None:
            await self.cluster.start()
        limits = self.settings.transport
        runner = web.AppRunner(
            create_app(self.services, self.sender, self.cork, self.handlers),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=limits.keepalive_seconds,  # idle keep-alives (local_server/guard.py)
            logger=QuietServerLogger(self.metrics),
        )
        await runner.setup()
        # A backlog of 1024, not aiohttp's 128: a burst of reconnecting clients otherwise overflows the accept
        # queue and each dropped SYN costs its client a 1 s retransmit.
        site = GuardedSite(
            runner,
            self.settings.host,
            self.settings.port,
            reuse_address=True,
            backlog=1024,
            guard_settings=limits,
            metrics=self.metrics,
        )
        await site.start()
        self._runners.append(runner)
        if runner.addresses:  # the port bound, when port 0 asked for any
            self.port = int(runner.addresses[0][1])
        if self.settings.metrics_port is not None:
            metrics_runner = web.AppRunner(_metrics_app(self.metrics), handle_signals=False, access_log=None)
            await metrics_runner.setup()
            await web.TCPSite(
                metrics_runner, self.settings.host, self.settings.metrics_port, reuse_address=True
            ).start()
            self._runners.append(metrics_runner)
        self._http = aiohttp.ClientSession()
        self._dispatcher = WebhookDispatcher(
            queue=self.services.queue,
            apps=self.services.apps,
            store=self.services.store,
            # With the debug console on, each delivery and its status shows on it.
            targets=tap_targets(create_targets(http=self._http), self.services.tap, self.services.apps),
            settings=self.settings.webhooks,
            metrics=self.metrics,
        )
        self._dispatch_task = asyncio.create_task(self._dispatcher.run())
        log.debug("sockless listening on http://%s:%s", self.settings.host, self.port)

    async def stop(self) -> None:
        """Graceful stop: no new sockets, every open one closed with 4200 (reconnect elsewhere), webhooks
        flushed within ``shutdown_grace_seconds``."""
        grace = self.settings.shutdown_grace_seconds
        for runner in self._runners:
            for site in list(runner.sites):
                await site.stop()
        closes = [
            t.close(4200, "Server shutting down") for _, t in self.sender.transports() if isinstance(t, WsTransport)
        ]
        if closes:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), timeout=grace + 1)
        # Their handlers remove the connections and queue the departures; the drain must see those jobs.
        await self.handlers.wait(grace)
        if self._dispatcher is not None:
            await self._dispatcher.drain(grace)
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
            await asyncio.gather(self._dispatch_task, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()
        if self._http is not None:
            await self._http.close()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.services.close()
        if self.cluster is not None:
            await self.cluster.client.aclose()  # built here, shared by the node's drivers


async def serve(settings: Settings) -> None:
    server = LocalServer(settings)
    await server.start()
    # Everything alive now (modules, settings, drivers) lives as long as the process: out of the collector's
    # sight, a full collection no longer walks ~60k start-up objects (a ~15 ms pause in the middle of a broadcast).
    gc.freeze()
    loop = asyncio.get_running_loop()
    event_loop = type(loop).__module__.split(".")[0]  # uvloop or asyncio
    title = f"sockless listening on http://{settings.host}:{server.port} (event loop: {event_loop})"
    print(banner(settings, server.port, title=title), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
