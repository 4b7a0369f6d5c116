"""One Lambda container's state: settings, event loop, boto3 clients and the shared services, built once.

Lambda runs one invocation at a time per container, on one thread, and keeps module state between warm
invocations. The state lives per thread here: on AWS that is the same thing, and it lets the emulator
run several "containers" as worker threads of one process without them sharing an event loop.

Nothing is built at import: the first invocation reads the environment (``SOCKLESS_*`` through
``shared.settings``, plus an optional ``SOCKLESS_CONFIG`` file), creates the boto3 session and the
services; later invocations reuse them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Collection, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from functions.app_secrets import apps_with_secrets, secrets_session
from functions.observability import EmfMetrics, entry_point
from shared.sender.base import Delivery
from shared.services import Clients, Services, build_services, create_store
from shared.settings import Settings, load_settings
from shared.types import AppId, SocketId

if TYPE_CHECKING:
    from functions.connections import Connections
    from shared.sender.apigateway import FanoutChunk
    from shared.sender.base import Sender
    from shared.webhooks.base import TargetPicker

log = logging.getLogger("sockless.lambda")

T = TypeVar("T")


class ConfigurationError(RuntimeError):
    """The function's environment lacks something it needs (fails the invocation loudly)."""


def management_url_from(event: Mapping[str, Any]) -> str | None:
    """``https://{domainName}/{stage}`` of a WebSocket event: the default management endpoint."""
    context = event.get("requestContext") or {}
    domain, stage = context.get("domainName"), context.get("stage")
    if not domain or not stage:
        return None
    return f"https://{domain}/{stage}"


class Container:
    def __init__(self, settings: Settings, management_url: str | None = None, session: Any = None) -> None:
        self.settings = settings
        self.management_url = settings.aws.management_endpoint_url or management_url
        self.loop = asyncio.new_event_loop()
        self._session: Any = session
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._services: Services | None = None
        self.metrics = EmfMetrics()
        self._targets: TargetPicker | None = None
        self._connections: Connections | None = None
        self._lock = threading.Lock()
        self.generation = 0

    # -- AWS clients (thread-safe once built; built on first use only) ------------------------------------

    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.settings.aws.region)
        return self._session

    def client(self, service: str, endpoint_url: str | None = None, region: str | None = None, **config: Any) -> Any:
        """A boto3 client, built once per container (thread-safe to use once built)."""
        key = (service, endpoint_url)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                from botocore.config import Config

                client = self._clients[key] = self.session().client(
                    service,
                    endpoint_url=endpoint_url,
                    region_name=region or self.settings.aws.region,
                    config=Config(**config) if config else None,
                )
            return client

    def management(self) -> Any:
        """The ``apigatewaymanagementapi`` client; posts must go to execute-api, never through CloudFront."""
        if self.management_url is None:
            raise ConfigurationError("SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL is not set")
        # Retries are ours (the sender's backoff, the welcome loop): botocore's own would double them.
        return self.client(
            "apigatewaymanagementapi",
            self.management_url,
            retries={"total_max_attempts": 1},
            max_pool_connections=64,
        )

    def management_call(self, operation: str, **kwargs: Any) -> bool:
        """One management API call; ``False`` when API Gateway says the connection is gone (410)."""
        client = self.management()
        try:
            getattr(client, operation)(**kwargs)
        except client.exceptions.GoneException:
            return False
        return True

    async def is_open(self, connection_id: str) -> bool:
        """``GetConnection``: whether API Gateway still holds the connection (the sweep's question)."""
        return await asyncio.to_thread(self.management_call, "get_connection", ConnectionId=connection_id)

    def lambda_client(self) -> Any:
        return self.client("lambda", self.settings.aws.lambda_endpoint_url, retries={"total_max_attempts": 2})

    def invoke_event(self, function_name: str | None, payload: Mapping[str, Any], what: str) -> None:
        """Invoke a function asynchronously (``InvocationType=Event``): Lambda queues it and returns 202."""
        if not function_name:
            raise ConfigurationError(f"no function name configured for the {what} (SOCKLESS_AWS__*_FUNCTION)")
        self.lambda_client().invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
        )

    def webhook_targets(self) -> TargetPicker:
        """HTTP webhooks through urllib3 (bundled with boto3; no aiohttp in Lambda), Lambda targets through
        this container's session and the configured Lambda endpoint. Pools are reused by warm starts."""
        if self._targets is None:
            from shared.webhooks.http_target import Urllib3Client
            from shared.webhooks.targets import create_targets

            def lambda_factory(region: str, timeout: float) -> Any:
                from botocore.config import Config

                config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1})
                return self.session().client(
                    "lambda", region_name=region, endpoint_url=self.settings.aws.lambda_endpoint_url, config=config
                )

            from shared import debug
            from shared.debug.webhooks import tap_targets

            targets = create_targets(http_client=Urllib3Client(), lambda_factory=lambda_factory)
            self._targets = tap_targets(targets, debug.installed(), self.services.apps)
        return self._targets

    # -- services --------------------------------------------------------------------------------------

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = self._build()
        return self._services

    @property
    def connections(self) -> Connections:
        if self._connections is None:
            from functions.connections import Connections

            self._connections = Connections(self.services)
        return self._connections

    def _build(self) -> Services:
        """The Lambda composition: DynamoDB store and limiter, SQS queue, API Gateway sender (its fan-out
        chunks invoke the fan-out function). Other drivers (a Redis store) go through ``create_store``."""
        settings = self.settings
        store_settings, queue_settings = settings.store, settings.queue
        # The drivers come from the same factories as everywhere else; the container only adds its cached
        # clients (one pool per container).
        dynamodb = sqs = None
        if store_settings.driver == "dynamodb":
            dynamodb = self.client(
                "dynamodb", store_settings.endpoint_url, store_settings.region, max_pool_connections=64
            )
        if queue_settings.driver == "sqs":
            sqs = self.client("sqs", queue_settings.endpoint_url, queue_settings.region)
        clients = Clients(dynamodb=dynamodb, sqs=sqs)
        store = create_store(store_settings, clients, settings.aws)
        sender = self._sender(store)
        from shared import debug

        # The emulator's debug console, when one runs in this process (never on AWS).
        tap = debug.installed()
        return build_services(settings, sender=sender, clients=clients, store=store, metrics=self.metrics, tap=tap)

    def _sender(self, resolver: Any) -> Sender:
        """The management API's sender; a function deployed without the endpoint (the webhooks worker: it
        delivers webhooks, it never posts to a connection) gets one that refuses to send instead. Posts go
        through the lean signed sender (shared/sender/management.py) with this container's credentials and
        region; boto3 stays for the rare management calls (welcome, sweep, pong)."""
        from shared.sender.apigateway import ApiGatewaySender
        from shared.sender.management import botocore_credentials

        if self.management_url is None:
            return NoManagementApi()
        offload = self._offload if self.settings.aws.fanout_function else None
        session = self.session()
        return ApiGatewaySender(
            resolver,
            endpoint_url=self.management_url,
            region=self.settings.aws.region or session.region_name,
            credentials=botocore_credentials(session),
            offload=offload,
            chunk_size=self.settings.aws.fanout_chunk_size,
            concurrency=self.settings.aws.post_connections,
        )

    async def _offload(self, chunk: FanoutChunk) -> None:
        """A chunk of a large broadcast goes to a parallel invocation of the fan-out function."""
        await asyncio.to_thread(self.invoke_event, self.settings.aws.fanout_function, chunk.to_dict(), "fan-out")

    def close(self) -> None:
        """Release the drivers and the loop (Lambda never does; tests and the emulator do)."""
        if self._services is not None:
            services, self._services = self._services, None
            self.run(services.close())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on this container's loop (one loop per container, reused by warm starts)."""
        return self.loop.run_until_complete(coro)


class NoManagementApi:
    """The sender of a function that is not meant to post (no ``SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL`` in
    its environment, and no ``execute-api:ManageConnections`` in its role): building the services works,
    sending raises ``ConfigurationError``, which names what the deployment lacks."""

    def _refuse(self) -> ConfigurationError:
        return ConfigurationError("SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL is not set: this function cannot post")

    async def send(self, app_id: AppId, socket_id: SocketId, frame: bytes) -> bool:
        raise self._refuse()

    async def broadcast(
        self, app_id: AppId, socket_ids: Collection[SocketId], frame: bytes, except_socket: SocketId | None = None
    ) -> Delivery:
        raise self._refuse()

    async def disconnect(self, app_id: AppId, socket_id: SocketId, code: int, reason: str) -> None:
        raise self._refuse()

    async def close(self) -> None:
        return None

    async def check_health(self) -> bool:
        return True


_local = threading.local()
_generation = 0  # bumped by reset(): every thread's container is rebuilt on its next invocation


def container(event: Mapping[str, Any] | None = None) -> Container:
    """This container's state, built on first use from the environment (and the event, for the
    management endpoint when the environment does not name one)."""
    current: Container | None = getattr(_local, "container", None)
    if current is not None and current.generation == _generation:
        return current
    if current is not None:
        current.close()
    # App secrets are read from Secrets Manager (or SSM) when the stack says so (functions/app_secrets.py),
    # through the session the container then keeps: a second session would load botocore's data again.
    session = secrets_session()
    apps = apps_with_secrets(client_factory=session.client) if session is not None else None
    settings = load_settings(os.environ.get("SOCKLESS_CONFIG"), **({"apps": apps} if apps is not None else {}))
    current = Container(settings, management_url_from(event) if event is not None else None, session)
    current.generation = _generation
    _local.container = current
    return current


def reset() -> None:
    """Start over as if Lambda replaced every container (tests: a fresh environment per test)."""
    global _generation
    _generation += 1
    current: Container | None = getattr(_local, "container", None)
    _local.container = None
    if current is not None:
        current.close()


def _flush_metrics() -> None:
    current: Container | None = getattr(_local, "container", None)
    if current is not None:
        current.metrics.flush()


# Every Lambda entry point: Powertools log context, and this invocation's metrics written when it ends.
entry = entry_point(_flush_metrics)
