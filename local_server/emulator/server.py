"""``python -m local_server --emulate-lambda``: the synthesized stack, run on this machine.

Start order: the template (``synth.py``: cached, or synthesized once), moto (DynamoDB + SQS) and the "AWS
endpoint" (management API + Lambda Invoke) on free ports, the template loaded against those endpoints
(``template.py``), the template's tables and queues, its functions each with its own environment and
credentials (``lambdas.py``) and IAM (``iam.py``), then the public port that pusher-js and the server SDKs
talk to (CloudFront's routing, ``edge.py``), the event source mappings and the schedules. What the
emulator does not follow from the template is printed by ``startup_report``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from cost.meter import Meter
from local_server.banner import banner
from local_server.emulator import aws, events, metering, moto_fifo, synth
from local_server.emulator.dynamodb_integration import DynamoDBIntegration
from local_server.emulator.edge import Edge
from local_server.emulator.http_api import HttpApi
from local_server.emulator.iam import Iam, Principal, allowed
from local_server.emulator.invoke import InvokeApi
from local_server.emulator.lambdas import LambdaService, Timings, install_thread_environ
from local_server.emulator.management import ManagementApi
from local_server.emulator.sqs import EventSourceMapping
from local_server.emulator.sqs import notify as sqs_notify
from local_server.emulator.sqs import woken_by as sqs_woken_by
from local_server.emulator.sqs_integration import SqsIntegration
from local_server.emulator.streams import StreamMapping, TableStream
from local_server.emulator.template import Deployment, Endpoints, Function, Integration, load
from local_server.emulator.websocket import Limits, Socket, WebSocketApi, register_integration
from local_server.ports import free_port
from shared.settings import Settings

log = logging.getLogger("sockless.emulator")


@dataclass(frozen=True)
class EmulatorOptions:
    concurrency: int = 8  # containers per function at most (fewer when its reserved concurrency is lower)
    sweep_interval: float | None = None  # seconds between scheduled runs; None: the template's; 0: never
    extra_functions: tuple[tuple[str, str], ...] = ()  # (name, "module.attr"): e.g. webhook Lambda targets
    idle_timeout: float = 600.0  # API Gateway's idle connection timeout
    max_connection_seconds: float = 7200.0  # API Gateway's maximum connection duration
    replaced_handlers: tuple[tuple[str, str], ...] = ()  # (template handler, "module.attr") e.g. test doubles
    template: Path | None = None  # a synthesized template to run (default: synthesize or reuse the cache)
    context: dict[str, Any] = field(default_factory=dict)  # CDK context for the synth (-c key=value)
    enforce_iam: bool = True
    throttle_posts: float = 0.0  # share of @connections calls answered 429
    moto_process: bool = True  # moto in a child process (moto_process.py): a second core for the emulator
    timings: Timings = field(default_factory=Timings)
    # The functions' EMF documents kept off the terminal (``run`` filters stdout; make emulate ARGS=--show-emf).
    hide_emf: bool = False


class Emulator:
    def __init__(self, settings: Settings, options: EmulatorOptions | None = None) -> None:
        self.settings = settings
        self.options = options or EmulatorOptions()
        self.iam = Iam(region=aws.REGION, account=events.ACCOUNT_ID, enforce=self.options.enforce_iam)
        self.moto = aws.Moto(settings.host, iam=self.iam, process=self.options.moto_process)
        self.lambdas = LambdaService(
            region=aws.REGION, concurrency=self.options.concurrency, timings=self.options.timings
        )
        # The one billing meter: Lambda, DynamoDB, SQS, logs, WebSocket and HTTP API units (cost/meter.py).
        self.meter = Meter()
        self._detach_meter: Callable[[], None] | None = None
        self.deployment: Deployment | None = None
        self.websocket: WebSocketApi | None = None
        self.http: HttpApi | None = None
        self.management: ManagementApi | None = None
        self.notes: list[str] = []
        self._runners: list[web.AppRunner] = []
        self._mappings: list[EventSourceMapping | StreamMapping] = []
        self._streams: list[TableStream] = []
        self._schedules: list[asyncio.Task[None]] = []
        self._limits: asyncio.Task[None] | None = None
        self.port = settings.port
        self.aws_url = ""
        self.template_path: Path | None = None

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        sockets = getattr(site._server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else port

    def _template(self) -> dict[str, Any]:
        if self.options.template is not None:
            self.template_path = self.options.template
            data: dict[str, Any] = json.loads(self.options.template.read_text(encoding="utf-8"))
            return data
        data, self.template_path = synth.template(self.options.context)
        return data

    async def start(self) -> None:
        # moto's request log and botocore's credential notes would drown the handlers' own logs.
        for noisy in ("werkzeug", "botocore", "moto"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        aws.use_fake_credentials()
        aws.share_botocore_data()
        install_thread_environ()
        template = await asyncio.to_thread(self._template)
        moto_fifo.install()  # SQS's FIFO order where moto 5 departs from it
        moto_url = await asyncio.to_thread(self.moto.start)
        # The AWS endpoint's URL goes into the functions' environment: its port is chosen before it serves.
        aws_port = free_port(self.settings.host)
        self.aws_url = f"http://{self.settings.host}:{aws_port}"
        apps_json = json.dumps([app.model_dump(mode="json") for app in self.settings.apps])
        deployment = self.deployment = load(template, Endpoints(moto_url, self.aws_url, aws.REGION), apps_json)
        self.notes = list(deployment.notes)
        await asyncio.to_thread(aws.create_resources, deployment)

        overlay, overlay_notes = aws.config_overlay(self.settings)
        self.notes.extend(overlay_notes)
        replaced = dict(self.options.replaced_handlers)
        for index, function in enumerate(sorted(deployment.functions.values(), key=lambda f: f.name)):
            if function.handler in replaced:
                self.notes.append(f"{function.name}: {function.handler} replaced by {replaced[function.handler]}")
                function.handler = replaced[function.handler]
            access_key = f"ASIAEMULATOR{index:08d}"
            self.iam.add(access_key, Principal(function.name, function.role, tuple(function.statements)))
            self.lambdas.add(function, aws.function_environment(function, deployment, access_key, overlay))
        self._grant_webhook_lambda_targets(deployment)
        self.notes.extend(self.iam.conditions())
        for name, path in self.options.extra_functions:
            self.lambdas.register(name, path)
        self.lambdas.destination = self._destination

        limits = Limits(
            idle_timeout=self.options.idle_timeout, max_connection_seconds=self.options.max_connection_seconds
        )
        self.meter.memory_mb = {f.name: f.memory_mb for f in deployment.functions.values()}
        self.meter.access_logs = deployment.websocket.access_logs or deployment.http.access_logs
        self._detach_meter = metering.attach(self.meter, self.lambdas, self.moto)
        self.websocket = WebSocketApi(self.lambdas, deployment.websocket, limits=limits, meter=self.meter)
        self.notes.extend(self._sqs_integrations(deployment, moto_url))
        self.http = HttpApi(self.lambdas, deployment.http, self.meter)
        self.management = ManagementApi(self.websocket, self.iam, throttle_rate=self.options.throttle_posts)
        self.notes.extend(self.websocket.unsupported() + self.http.unsupported())
        endpoint = web.Application(client_max_size=8 * 1024 * 1024)
        self.management.add_routes(endpoint)
        InvokeApi(self.lambdas, self.iam).add_routes(endpoint)
        await self._serve(endpoint, self.settings.host, aws_port)

        polling = deployment.polling(webhooks=any(app.webhooks for app in self.settings.apps))
        if any(not m.enabled for m in polling):
            self.notes.append("webhook queue: its mapping is disabled in the template, run for the config's webhooks")
        # Every message sent to a mapped queue wakes its pollers (a long poll's answer): they poll on their own
        # only every second, for messages back from a visibility timeout.
        self.moto.observers.append(sqs_woken_by)
        for mapping in polling:
            function = deployment.functions[mapping.function]
            queue = deployment.queues[mapping.queue_arn]
            access_key = next(k for k, p in self.iam.principals.items() if p.function == function.name)
            esm = EventSourceMapping(
                sqs=_client_as("sqs", moto_url, access_key),
                queue_url=queue.url,
                queue_arn=queue.arn,
                function=function.name,
                lambdas=self.lambdas,
                region=aws.REGION,
                batch_size=mapping.batch_size,
                report_batch_item_failures=mapping.report_batch_item_failures,
                pollers=min(mapping.max_concurrency or 2, 2),
            )
            esm.start()
            self._mappings.append(esm)
        self._stream_mappings(deployment)
        for schedule in deployment.schedules:
            interval = schedule.seconds if self.options.sweep_interval is None else self.options.sweep_interval
            if schedule.seconds is None and self.options.sweep_interval is None:
                self.notes.append(f"schedule {schedule.expression} of {schedule.function} is not emulated")
                continue
            if interval and interval > 0:
                self._schedules.append(asyncio.create_task(self._schedule(schedule.function, interval)))
        shortest = min(self.options.idle_timeout, self.options.max_connection_seconds)
        self._limits = asyncio.create_task(self.websocket.enforce_limits(min(max(shortest / 4, 0.05), 10.0)))
        extra_routes = None
        if self.settings.debug_console:  # GET /debug with the Lambda invocations (docs/debug-console.md)
            from local_server.debug.emulator import RunningCost, emulator_console

            websocket = self.websocket
            cost = RunningCost(self.meter, lambda: sum(1 for s in websocket.sockets.values() if s.open))
            extra_routes = emulator_console(
                self.settings, self.lambdas, self.http, deployment.tables[0].name, aws.REGION, moto_url, cost
            ).add_routes
        # After the console installed its tap: the warmed containers' engines report to it.
        await self.lambdas.preload()
        public = Edge(self.websocket, self.http).app(self._with_stats(extra_routes))
        self.port = await self._serve(public, self.settings.host, self.settings.port)
        startup_report(self)

    def _grant_webhook_lambda_targets(self, deployment: Deployment) -> None:
        """The grant the stack derives from the apps file (``SocklessStack._grant_webhook_lambda_targets``):
        the webhook worker may invoke the Lambda webhook targets the apps name. The template was synthesized
        with the example apps, so the rule is applied to the config's apps here, and, as the stack does, to
        the worker of the webhook queue only: no other function (the frames queue's reader included) may
        invoke a customer's function."""
        arns = set()
        for app in self.settings.apps:
            for hook in app.model_dump(mode="json", by_alias=True).get("webhooks") or []:
                target = hook.get("lambda") or (
                    {"function_name": hook["lambda_function"]} if hook.get("lambda_function") else None
                )
                if not target:
                    continue
                name, region = target["function_name"], target.get("region") or aws.REGION
                arns.add(
                    name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{events.ACCOUNT_ID}:function:{name}"
                )
        if not arns:
            return
        workers = deployment.webhook_workers()
        if not workers:
            self.notes.append("Lambda webhook targets: no function reads the webhook queue; none may invoke them")
        for key, principal in list(self.iam.principals.items()):
            if principal.function in workers:
                grant = {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": sorted(arns)}
                self.iam.add(key, Principal(principal.function, principal.role, (*principal.statements, grant)))

    def _sqs_integrations(self, deployment: Deployment, moto_url: str) -> list[str]:
        """WebSocket routes with an ``AWS`` integration to SQS (the ordered frames queue) or to DynamoDB (the
        ordered frames stream): each integration's credentials role signs its calls, as API Gateway assumes it
        (cdk/components/frames.py, cdk/components/frames_stream.py)."""
        integrations = [i for i in deployment.websocket.routes.values() if i.type == "AWS"]
        if not integrations:
            return []
        clients: dict[tuple[str, str], Any] = {}
        notes: list[str] = []
        for index, integration in enumerate(integrations):
            service = "dynamodb" if DynamoDBIntegration.handles(integration) else "sqs"
            notes.extend((DynamoDBIntegration if service == "dynamodb" else SqsIntegration).unsupported(integration))
            role = str(integration.properties.get("CredentialsArn") or "")
            if (service, role) in clients:
                continue
            access_key = f"ASIAINTEGRATION{index:05d}"
            statements = tuple(deployment.role_statements.get(role, ()))
            self.iam.add(
                access_key, Principal(f"apigateway-{integration.logical_id}", role.rsplit("/", 1)[-1], statements)
            )
            clients[(service, role)] = _client_as(service, moto_url, access_key)
        sqs = SqsIntegration(
            client_for=lambda role: clients[("sqs", role)],
            queue_url=lambda account, name: f"{moto_url}/{account}/{name}",
            notify=sqs_notify,
        )
        dynamodb = DynamoDBIntegration(client_for=lambda role: clients[("dynamodb", role)])

        async def run(api: WebSocketApi, socket: Socket, integration: Integration, body: str | bytes, key: str) -> None:
            runner = dynamodb.run if DynamoDBIntegration.handles(integration) else sqs.run
            await runner(api, socket, integration, body, key)

        register_integration("AWS", run)
        return notes

    def _stream_mappings(self, deployment: Deployment) -> None:
        """The DynamoDB stream event source mappings (the ordered frames stream's): each table's stream built
        from its writes (``streams.py``), read with the mapping's settings."""
        tables = {table.name: table for table in deployment.tables}
        streams: dict[str, TableStream] = {}
        for source in deployment.streams:
            if not source.enabled:
                continue
            function = deployment.functions[source.function]
            # Lambda reads a stream with the function's execution role (GetRecords and friends on the stream).
            if not allowed(function.statements, "dynamodb:GetRecords", source.stream_arn):
                self.notes.append(f"{function.name} may not read {source.stream_arn}: its mapping does not run")
                continue
            stream = streams.get(source.table)
            if stream is None:
                stream = streams[source.table] = TableStream(tables[source.table], aws.REGION)
                self.moto.observers.append(stream.observe)
                self._streams.append(stream)
            mapping = StreamMapping(stream=stream, source=source, lambdas=self.lambdas, destination=self._destination)
            mapping.start()
            self._mappings.append(mapping)

    def _destination(self, arn: str, record: dict[str, Any]) -> None:
        """An async invocation's on-failure destination: an SQS queue or a Lambda function of the stack."""
        assert self.deployment is not None
        queue = self.deployment.queues.get(arn)
        if queue is not None:
            aws.client("sqs", self.deployment.endpoints.moto_url).send_message(
                QueueUrl=queue.url, MessageBody=json.dumps(record)
            )
        elif self.lambdas.exists(arn):
            self.lambdas.invoke_event(arn, record)
        else:
            log.warning("on-failure destination %s is not emulated; the record is dropped", arn)

    def _with_stats(self, extra_routes: Callable[[web.Application], None] | None) -> Callable[[web.Application], None]:
        """``GET /@emulator/stats``: what a scenario cost in billable units (bench/handler_cost.py)."""

        async def stats(_request: web.Request) -> web.Response:
            lambdas = self.lambdas.stats
            assert self.websocket is not None
            return web.json_response(
                {
                    "lambda": {
                        "invocations": lambdas.invocations,
                        "errors": lambdas.errors,
                        "cpu_seconds": lambdas.cpu_seconds,
                        "wall_seconds": lambdas.wall_seconds,
                        "cold_starts": lambdas.cold_starts,
                        "dropped_events": lambdas.dropped_events,
                    },
                    "api_gateway": self.websocket.metered(),
                    "aws_requests": dict(self.moto.requests),
                    # moto and the IAM gate: the gate on the callers' threads, moto on them too or in its process
                    "aws_cpu_seconds": self.moto.cpu_seconds,
                    "aws_process_cpu_seconds": self.moto.process_cpu_seconds,  # of which in the moto process
                    "meter": {
                        "units": self.meter.snapshot(),
                        "counts": self.meter.counted(),
                        "open_connection_minutes": self.websocket.open_connection_minutes(),
                        # Invocations and socket tasks ($disconnect) not finished: the meter is still moving.
                        "in_flight": self.lambdas.in_flight() + len(self.websocket._tasks),
                    },
                    # Per mapping: batches invoked, answers that failed their batch whole, FIFO messages deleted
                    # after a failed one of their group (local_server/emulator/batch_response.py).
                    "event_source_mappings": [
                        {
                            "function": m.function,
                            "queue_url": m.queue_url,
                            "batches": m.batches,
                            "invalid_answers": m.invalid_answers,
                            "out_of_order": m.out_of_order,
                        }
                        for m in self._mappings
                    ],
                    "iam": {
                        "checks": self.iam.checks,
                        "denied": [
                            {"function": d.principal.function, "action": d.action, "resource": d.resource}
                            for d in self.iam.denials
                        ],
                    },
                }
            )

        def add(app: web.Application) -> None:
            app.router.add_get("/@emulator/stats", stats)
            if extra_routes is not None:
                extra_routes(app)

        return add

    async def _schedule(self, function: str, interval: float) -> None:
        rule = f"arn:aws:events:{aws.REGION}:{events.ACCOUNT_ID}:rule/{function}-schedule"
        while True:
            await asyncio.sleep(interval)
            self.lambdas.invoke_event(function, events.scheduled(rule, aws.REGION))

    async def stop(self) -> None:
        """Stop accepting, close sockets (their ``$disconnect`` runs), let webhooks drain, stop moto."""
        grace = self.settings.shutdown_grace_seconds
        runners, self._runners = self._runners, []
        if runners:
            for site in list(runners[-1].sites):
                await site.stop()
        if self.websocket is not None:
            await self.websocket.close(timeout=grace)
        for task in (*self._schedules, self._limits):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.lambdas.drain(timeout=grace)
        for mapping in self._mappings:
            await mapping.stop()
        if sqs_woken_by in self.moto.observers:
            self.moto.observers.remove(sqs_woken_by)
        for stream in self._streams:
            if stream.observe in self.moto.observers:
                self.moto.observers.remove(stream.observe)
        for runner in reversed(runners):
            await runner.cleanup()
        self.lambdas.shutdown()
        if self._detach_meter is not None:
            self._detach_meter()
        await asyncio.to_thread(self.moto.stop)


def _client_as(service: str, url: str, access_key: str) -> Any:
    """A client signing as a function's role (what Lambda's event source poller uses)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key="emulator", aws_session_token="emulator"
    )
    return session.client(service, endpoint_url=url, region_name=aws.REGION)


def handlers_line(functions: Iterable[Function]) -> str:
    """What runs the handlers here, next to what the template asks for: never the template's runtime itself."""
    runtimes = ", ".join(sorted({f.runtime for f in functions if f.runtime})) or "no Runtime"
    here = ".".join(map(str, sys.version_info[:3]))
    return f"run in this process under Python {here} (the template deploys {runtimes})"


def startup_report(emulator: Emulator) -> None:
    """The banner ``make serve`` prints (local_server/banner.py), with the ports only the emulator opens; what
    of the template it does not follow is counted here and listed at DEBUG (one line each)."""
    deployment = emulator.deployment
    assert deployment is not None and emulator.websocket is not None
    settings = emulator.settings
    iam = "enforced" if emulator.iam.enforce else "NOT enforced"
    emf = "off the terminal (make emulate ARGS=--show-emf prints them)" if emulator.options.hide_emf else "printed"
    moto_runs = "in a process of its own" if emulator.options.moto_process else "in this process"
    extra = [
        ("Handlers", handlers_line(deployment.functions.values())),
        ("AWS endpoint", f"{emulator.aws_url}  (API Gateway management API + Lambda Invoke, for the functions)"),
        ("moto", f"{emulator.moto.url}  (the stack's DynamoDB and SQS, {moto_runs})"),
        ("Template", f"{emulator.template_path}  ({len(deployment.functions)} functions, IAM {iam})"),
        ("CloudWatch EMF", emf),
    ]
    for note in emulator.notes:
        log.debug("not followed: %s", note)
    notes = []
    if emulator.notes:
        notes.append(
            f"{len(emulator.notes)} details of the template are not emulated: SOCKLESS_LOG_LEVEL=DEBUG lists them"
        )
    title = f"sockless (emulating API Gateway + Lambda) listening on http://{settings.host}:{emulator.port}"
    print(banner(settings, emulator.port, title=title, extra=extra, metrics=False, notes=notes), flush=True)


def collect_less() -> None:
    """Once started, the emulator's process runs the cyclic garbage collector less often and never over
    what start-up built. Its Python heap holds ~300,000 tracked objects before the first client (botocore's
    models and clients, the functions' modules, moto) and grows with every item moto stores; a full
    collection walked all of them (~0.3 s here) every few hundred requests, and the young generations were
    collected every 700 allocations: ~5 % of the emulator's CPU in a connect storm (bench/RESULTS.md,
    "Emulator speed"). ``gc.freeze`` leaves what exists now out of every later collection; the higher
    thresholds collect the young generations every 10,000 allocations and the old one more rarely. Only
    cycles wait longer to be freed: reference counting frees everything else at once, as before."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def serve(settings: Settings, options: EmulatorOptions | None = None) -> None:
    emulator = Emulator(settings, options)
    await emulator.start()
    collect_less()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await emulator.stop()
