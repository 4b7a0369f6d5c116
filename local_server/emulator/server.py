"""``python -m local_server --emulate-lambda``: API Gateway, Lambda, DynamoDB and SQS on this machine.

Start order: moto (DynamoDB + SQS, with the table and queues CDK would create), the "AWS endpoint"
(management API + Lambda Invoke) on a free port, the functions' environment, then the public port that
pusher-js and the server SDKs talk to, the SQS event source mapping and the sweep schedule.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from local_server.emulator import aws, events
from local_server.emulator.gateway import Functions, Gateway
from local_server.emulator.lambdas import LambdaService
from local_server.emulator.sqs import EventSourceMapping
from shared.settings import Settings

log = logging.getLogger("sockless.emulator")


@dataclass(frozen=True)
class EmulatorOptions:
    concurrency: int = 8  # Lambda containers (worker threads)
    sweep_interval: float = 60.0  # the EventBridge schedule of the sweep function; 0 disables it
    stage: str = "prod"  # the WebSocket API stage (the management endpoint's path)
    http_stage: str = "$default"  # the HTTP API stage (a named one prefixes rawPath)
    prefix: str = "sockless"  # function, table and queue names
    extra_functions: tuple[tuple[str, str], ...] = ()  # (name, "module.attr"): e.g. webhook Lambda targets
    idle_timeout: float = 600.0  # API Gateway's idle connection timeout
    max_connection_seconds: float = 7200.0  # API Gateway's maximum connection duration


class Emulator:
    def __init__(self, settings: Settings, options: EmulatorOptions | None = None) -> None:
        self.settings = settings
        self.options = options or EmulatorOptions()
        self.moto = aws.Moto(settings.host)
        self.lambdas = LambdaService(
            prefix=self.options.prefix, region=aws.REGION, concurrency=self.options.concurrency
        )
        for name, path in self.options.extra_functions:
            self.lambdas.register(name, path)
        names = self.lambdas.name
        self.gateway = Gateway(
            self.lambdas,
            Functions(
                connect=names("connect"),
                disconnect=names("disconnect"),
                message=names("message"),
                http_api=names("http_api"),
            ),
            stage=self.options.stage,
            http_stage=self.options.http_stage,
            idle_timeout=self.options.idle_timeout,
            max_connection_seconds=self.options.max_connection_seconds,
        )
        self._runners: list[web.AppRunner] = []
        self._mapping: EventSourceMapping | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._limits: asyncio.Task[None] | None = None
        self.port = settings.port
        self.aws_url = ""

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        sockets = getattr(site._server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def start(self) -> None:
        # moto's request log and botocore's credential notes would drown the handlers' own logs.
        for noisy in ("werkzeug", "botocore", "moto"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        aws.use_fake_credentials()
        moto_url = await asyncio.to_thread(self.moto.start)
        resources = await asyncio.to_thread(aws.create_resources, moto_url, prefix=self.options.prefix)
        aws_port = await self._serve(self.gateway.aws_app(), self.settings.host, 0)
        self.aws_url = f"http://{self.settings.host}:{aws_port}"
        names = {kind: self.lambdas.name(kind) for kind in ("welcome", "fanout")}
        env = aws.lambda_environment(
            self.settings, resources, aws_url=self.aws_url, stage=self.options.stage, function_names=names
        )
        # The functions read their configuration from the environment only, as on AWS.
        for key in [k for k in os.environ if k.startswith("SOCKLESS_")]:
            del os.environ[key]
        os.environ.update(env)
        self._mapping = EventSourceMapping(
            sqs=aws.client("sqs", moto_url),
            queue_url=resources.queue_url,
            queue_arn=resources.queue_arn,
            function=self.lambdas.name("webhooks"),
            lambdas=self.lambdas,
            region=resources.region,
        )
        self._mapping.start()
        if self.options.sweep_interval > 0:
            self._sweep = asyncio.create_task(self._schedule_sweep(self.options.sweep_interval))
        shortest = min(self.options.idle_timeout, self.options.max_connection_seconds)
        self._limits = asyncio.create_task(self.gateway.enforce_limits(min(max(shortest / 4, 0.05), 10.0)))
        extra_routes = None
        if self.settings.debug_console:  # GET /debug with the Lambda invocations (docs/debug-console.md)
            from local_server.debug.emulator import emulator_console

            extra_routes = emulator_console(self.settings, self.lambdas, self.gateway, resources).add_routes
        public = self.gateway.public_app(self._with_stats(extra_routes))
        self.port = await self._serve(public, self.settings.host, self.settings.port)
        log.info("emulating API Gateway + Lambda on %s (AWS endpoint %s, moto %s)", self.port, self.aws_url, moto_url)

    def _with_stats(self, extra_routes: Callable[[web.Application], None] | None) -> Callable[[web.Application], None]:
        """``GET /@emulator/stats``: what a scenario cost in billable units (bench/handler_cost.py)."""

        async def stats(_request: web.Request) -> web.Response:
            lambdas = self.lambdas.stats
            return web.json_response(
                {
                    "lambda": {
                        "invocations": lambdas.invocations,
                        "errors": lambdas.errors,
                        "cpu_seconds": lambdas.cpu_seconds,
                        "wall_seconds": lambdas.wall_seconds,
                    },
                    "api_gateway": self.gateway.metered(),
                    "aws_requests": dict(self.moto.requests),
                }
            )

        def add(app: web.Application) -> None:
            app.router.add_get("/@emulator/stats", stats)
            if extra_routes is not None:
                extra_routes(app)

        return add

    async def _schedule_sweep(self, interval: float) -> None:
        name = self.lambdas.name("sweep")
        rule = f"arn:aws:events:{aws.REGION}:{events.ACCOUNT_ID}:rule/{name}-schedule"
        while True:
            await asyncio.sleep(interval)
            self.lambdas.invoke_event(name, events.scheduled(rule, aws.REGION))

    async def stop(self) -> None:
        """Stop accepting, close sockets (their ``$disconnect`` runs), let webhooks drain, stop moto."""
        grace = self.settings.shutdown_grace_seconds
        runners, self._runners = self._runners, []
        if runners:
            for site in list(runners[-1].sites):
                await site.stop()
        await self.gateway.close(timeout=grace)
        for task in (self._sweep, self._limits):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.lambdas.drain(timeout=grace)
        if self._mapping is not None:
            await self._mapping.stop()
        for runner in reversed(runners):
            await runner.cleanup()
        self.lambdas.shutdown()
        await asyncio.to_thread(self.moto.stop)


async def serve(settings: Settings, options: EmulatorOptions | None = None) -> None:
    emulator = Emulator(settings, options)
    await emulator.start()
    print(f"sockless (emulating API Gateway + Lambda) listening on http://{settings.host}:{emulator.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await emulator.stop()
