"""The sockless stack: the components wired together, every grant visible here, and the outputs.

Read top to bottom it is the AWS half of docs/architecture.md: a store, the webhook queue, the app
secrets, eight functions on one bundle, the WebSocket and HTTP APIs, CloudFront in front, monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk.components.apigw_account import ApiGatewayLoggingRole
from cdk.components.apps import AppSecrets, app_identifier
from cdk.components.bundle import (
    RUNTIME_DEPENDENCIES,
    VALKEY_DEPENDENCIES,
    BundleSpec,
    lambda_code,
    pinned_requirements,
)
from cdk.components.edge import Edge
from cdk.components.frames import FramesQueue
from cdk.components.frames_stream import FramesStream
from cdk.components.functions import ARCHITECTURE, RUNTIME, AsyncInvoke, Placement, SocklessFunction
from cdk.components.http_api import RestGateway
from cdk.components.monitoring import POWERTOOLS_NAMESPACE, Monitoring
from cdk.components.naming import physical_name
from cdk.components.network import Network
from cdk.components.queues import failures_queue
from cdk.components.state import DynamoDbStore, Store, ValkeyStore
from cdk.components.webhooks import WebhookQueue, polled
from cdk.components.websocket import WebSocketGateway
from cdk.config import DeployConfig
from cdk.nag import acknowledge_findings


@dataclass(frozen=True)
class FunctionSpec:
    handler: str
    description: str
    memory_mb: int
    timeout_seconds: int
    # What the function does with the rest of the stack (the grants below follow these flags).
    posts: bool = False  # sends frames / asks API Gateway about connections (@connections)
    enqueues: bool = False  # emits webhook events
    fans_out: bool = False  # may hand big broadcasts to the fan-out function
    asynchronous: bool = False  # invoked with InvocationType=Event by another function
    # Asynchronous functions: retries after a function error, and how long a (throttled) event may wait.
    async_retries: int = 0
    async_max_age_seconds: int = 60


# Memory buys CPU in Lambda (1,769 MB = one vCPU): the handshake path (connect, welcome) and the message
# paths get 1 GB so a cold start's imports take ~0.5 s, not ~2 s; background work gets less.
FUNCTIONS: dict[str, FunctionSpec] = {
    "connect": FunctionSpec(
        "functions.connect.handler.handler", "$connect: check the app, mint the socket id, start the welcome", 1024, 10
    ),
    "welcome": FunctionSpec(
        "functions.welcome.handler.handler",
        "sends pusher:connection_established (or pusher:error) once the connection is open",
        1024,
        10,
        posts=True,
        enqueues=True,
        asynchronous=True,
    ),
    "disconnect": FunctionSpec(
        "functions.disconnect.handler.handler",
        "$disconnect: remove subscriptions and presence, emit webhooks",
        512,
        10,
        posts=True,
        enqueues=True,
        fans_out=True,
    ),
    "message": FunctionSpec(
        "functions.message.handler.handler",
        "$default: every client frame (subscribe, client events, signin...)",
        1024,
        10,
        posts=True,
        enqueues=True,
        fans_out=True,
    ),
    "fanout": FunctionSpec(
        "functions.fanout.handler.handler",
        "posts one chunk of a large channel's broadcast",
        1024,
        60,
        posts=True,
        enqueues=True,
        asynchronous=True,
        # No retry after an error (a chunk half posted would be posted twice), but a chunk throttled by the
        # reserved concurrency waits up to 5 minutes for it: late beats lost, and a drop is an alarm.
        async_retries=0,
        async_max_age_seconds=300,
    ),
    "http_api": FunctionSpec(
        "functions.http_api.handler.handler",
        "the Pusher REST API (/apps/{app_id}/...)",
        1024,
        10,
        posts=True,
        enqueues=True,
        fans_out=True,
    ),
    "webhooks": FunctionSpec(
        "functions.webhooks.handler.handler",
        "delivers signed webhooks from the SQS queue (a failed delivery is re-queued with a delay)",
        512,
        60,
        enqueues=True,
    ),
    "sweep": FunctionSpec(
        "functions.sweep.handler.handler",
        "finds connections API Gateway dropped without $disconnect and cleans them up",
        512,
        # Under the schedule's period: a run (at most 5,000 connections) ends before the next one starts.
        55,
        posts=True,
        enqueues=True,
        fans_out=True,
    ),
}
# docs/aws.md: a ghost connection lives at most ~6 minutes when nothing is posted to it.
SWEEP_EVERY = cdk.Duration.minutes(1)
SERVICE_NAME = "sockless"
# What the functions announce in connection_established and the client outputs configure (seconds): under API
# Gateway's 10-minute idle timeout with room for pusher-js's 30 s pong wait.
ACTIVITY_TIMEOUT_SECONDS = 540


class SocklessStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        self.function_specs = FUNCTIONS

        # -- state -------------------------------------------------------------------------------------------
        self.network: Network | None = None
        placement: Placement | None = None
        self.store: Store
        if config.store == "valkey":
            self.network = Network(self, "Network", log_retention_days=config.log_retention_days)
            placement = self.network.placement
            self.store = ValkeyStore(
                self,
                "Store",
                network=self.network,
                name=physical_name(self.stack_name, "state", limit=40, lowercase=True),
            )
        else:
            self.store = DynamoDbStore(self, "Store")
        self.webhook_queue = WebhookQueue(
            self, "WebhookQueue", worker_timeout=cdk.Duration.seconds(FUNCTIONS["webhooks"].timeout_seconds)
        )
        self.app_secrets = AppSecrets(self, "Apps", apps=config.apps)
        # welcome and fanout events Lambda gave up on (throttled past their maximum age, or failed): each one
        # is a client without its first frame or recipients without an event, kept 14 days for a human.
        self.async_failures = failures_queue(self, "AsyncFailures")

        # -- functions ---------------------------------------------------------------------------------------
        requirements = RUNTIME_DEPENDENCIES + (VALKEY_DEPENDENCIES if config.store == "valkey" else ())
        code = lambda_code(BundleSpec(RUNTIME, ARCHITECTURE, pinned_requirements(requirements)))
        environment = {
            **self.store.environment,
            **self.webhook_queue.environment,
            "SOCKLESS_APPS": self.app_secrets.apps_json(),
            "APP_SECRETS": self.app_secrets.secrets_json(),
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_NAMESPACE,
            # pusher-js pings after this long without a frame; API Gateway closes a connection idle for 10
            # minutes. 540 s (not Pusher's 120) makes an idle client's pings 4.5x rarer: each is two billed
            # messages (docs/cost.md "Pings"). The client outputs below set the same activityTimeout.
            "SOCKLESS_ACTIVITY_TIMEOUT": str(ACTIVITY_TIMEOUT_SECONDS),
            # Logs and metrics are billed by the byte and by the metric (docs/cost.md): -c log_level=WARNING keeps
            # the handlers' INFO lines out, with 1 % of invocations logged in full (Powertools' sampling);
            # -c metrics=false stops the EMF documents.
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            "POWERTOOLS_LOGGER_SAMPLE_RATE": "0.01" if config.log_level != "INFO" else "0",
            "POWERTOOLS_METRICS_DISABLED": "false" if config.metrics else "true",
            # The functions read the app secrets once per container: bumping this (-c apps_revision=N) makes a
            # deploy replace every container, so a changed secret is read again. Not SOCKLESS_*: not a setting.
            "APPS_REVISION": config.apps_revision,
        }
        self.functions: dict[str, SocklessFunction] = {}
        for name, spec in FUNCTIONS.items():
            reserved = config.fanout_reserved_concurrency if name == "fanout" else None
            self.functions[name] = SocklessFunction(
                self,
                f"{_construct_id(name)}Function",
                code=code,
                handler=spec.handler,
                description=spec.description,
                memory_mb=spec.memory_mb,
                timeout=cdk.Duration.seconds(spec.timeout_seconds),
                environment=environment,
                log_retention_days=config.log_retention_days,
                quiet_platform_logs=config.log_level != "INFO",
                placement=placement,
                reserved_concurrency=reserved or None,
                # Lambda's own retries after an error come a minute later: useless for a welcome (the client has
                # given up) and a duplicate for a chunk already half posted; both retry inside the invocation.
                # Throttled events wait up to the maximum age; what is dropped lands in AsyncFailures.
                async_invoke=AsyncInvoke(
                    spec.async_retries, cdk.Duration.seconds(spec.async_max_age_seconds), self.async_failures
                )
                if spec.asynchronous
                else None,
            )
        fn = {name: f.function for name, f in self.functions.items()}

        # -- APIs --------------------------------------------------------------------------------------------
        self.frames: FramesQueue | FramesStream | None = None
        if config.ordered_frames == "fifo":
            self.frames = FramesQueue(
                self, "Frames", consumer_timeout=cdk.Duration.seconds(FUNCTIONS["message"].timeout_seconds)
            )
        elif config.ordered_frames == "stream":
            self.frames = FramesStream(self, "FramesStream")
        if self.frames is not None:
            self.frames.attach_consumer(fn["message"])
        self.websocket = WebSocketGateway(
            self,
            "WebSocket",
            connect=fn["connect"],
            disconnect=fn["disconnect"],
            message=fn["message"],
            default_integration=self.frames.integration() if self.frames is not None else None,
            stage_name=config.stage_name,
            ping_route=config.ping_route,
            throttle_rate=config.stage_throttle_rate,
            throttle_burst=config.stage_throttle_burst,
            log_retention_days=config.log_retention_days,
            access_logs=config.access_logs,
        )
        # The account-wide role is what lets API Gateway write WebSocket access logs: without them, not needed.
        if config.apigw_logging_role and config.access_logs:
            logging_role = ApiGatewayLoggingRole(self, "ApiGatewayLogging")
            self.websocket.stage.node.add_dependency(logging_role.account)
        self.rest = RestGateway(
            self,
            "Rest",
            handler=fn["http_api"],
            throttle_rate=config.stage_throttle_rate,
            throttle_burst=config.stage_throttle_burst,
            log_retention_days=config.log_retention_days,
            access_logs=config.access_logs,
        )
        self.edge = Edge(
            self,
            "Edge",
            websocket_host=self.websocket.host,
            rest_host=self.rest.host,
            stage_name=config.stage_name,
            domain_name=config.domain_name,
            certificate_arn=config.certificate_arn,
        )

        # -- wiring and grants -------------------------------------------------------------------------------
        management = self.websocket.management_endpoint_url
        fn["connect"].add_environment("SOCKLESS_AWS__WELCOME_FUNCTION", fn["welcome"].function_name)
        _grant_invoke(fn["welcome"], fn["connect"])
        for name, spec in FUNCTIONS.items():
            function = fn[name]
            self.store.grant(function)
            self.app_secrets.grant_read(function)
            if spec.posts:
                function.add_environment("SOCKLESS_AWS__MANAGEMENT_ENDPOINT_URL", management)
                self.websocket.grant_manage_connections(function)
            if spec.enqueues:
                self.webhook_queue.queue.grant_send_messages(function)
            if spec.fans_out:
                function.add_environment("SOCKLESS_AWS__FANOUT_FUNCTION", fn["fanout"].function_name)
                _grant_invoke(fn["fanout"], function)
        self.webhook_queue.attach_worker(
            fn["webhooks"], max_concurrency=config.webhooks_max_concurrency, enabled=polled(config.apps)
        )
        self._grant_webhook_lambda_targets(fn["webhooks"])
        events.Rule(
            self,
            "SweepSchedule",
            description="sockless: look for connections whose $disconnect never came",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            targets=[targets.LambdaFunction(fn["sweep"], retry_attempts=0)],
        )

        # -- monitoring and outputs --------------------------------------------------------------------------
        self.monitoring = (
            Monitoring(
                self,
                "Monitoring",
                functions=fn,
                webhook_queue=self.webhook_queue.queue,
                dead_letters=self.webhook_queue.dead_letters,
                async_failures=self.async_failures,
                asynchronous=[name for name, spec in FUNCTIONS.items() if spec.asynchronous],
                websocket_api=self.websocket.api,
                websocket_stage=config.stage_name,
                rest_api=self.rest.api,
                alarm_email=config.alarm_email,
            )
            if config.monitoring
            else None
        )
        if config.budget_usd is not None and config.alarm_email:
            self._budget(config.budget_usd, config.alarm_email)
        self._outputs()
        acknowledge_findings(self)

    def _budget(self, usd: int, email: str) -> None:
        """A monthly cost budget for the account, emailing at 80 % (forecast) and 100 % (actual) of it."""
        from aws_cdk import aws_budgets as budgets

        def notify(kind: str, percent: int) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind, comparison_operator="GREATER_THAN", threshold=percent
                ),
                subscribers=[budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email)],
            )

        budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=usd, unit="USD"),
            ),
            notifications_with_subscribers=[notify("FORECASTED", 80), notify("ACTUAL", 100)],
        )

    def _grant_webhook_lambda_targets(self, worker: lambda_.IFunction) -> None:
        """Apps may name Lambda functions as webhook targets (Sockudo's ``lambda`` target): the worker may
        invoke exactly those, by name, in the region each names."""
        arns: set[str] = set()
        for entry in self.config.apps:
            for hook in entry.settings.get("webhooks", ()):
                target = hook.get("lambda") or (
                    {"function_name": hook["lambda_function"]} if hook.get("lambda_function") else None
                )
                if target is None:
                    continue
                name = target["function_name"]
                region = target.get("region", "us-east-1")
                arns.add(
                    name
                    if name.startswith("arn:")
                    else f"arn:{self.partition}:lambda:{region}:{self.account}:function:{name}"
                )
        if arns:
            worker.add_to_role_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=sorted(arns)))

    def _outputs(self) -> None:
        host = self.edge.host
        first = self.config.apps[0]
        cdk.CfnOutput(self, "WebSocketHost", value=host, description="pusher-js wsHost (wss, port 443)")
        cdk.CfnOutput(self, "HttpHost", value=host, description="server SDKs' host (https, port 443)")
        cdk.CfnOutput(
            self,
            "WebSocketApiUrl",
            value=f"wss://{self.websocket.host}/{self.config.stage_name}",
            description="the WebSocket stage itself (takes ?app_key=KEY; pusher-js needs the CloudFront host)",
        )
        cdk.CfnOutput(self, "RestApiUrl", value=self.rest.api.api_endpoint, description="the HTTP API itself")
        client_options = (
            f"wsHost: '{host}', wsPort: 443, wssPort: 443, forceTLS: true, enabledTransports: ['ws', 'wss'], "
            f"disableStats: true, cluster: 'mt1', activityTimeout: {ACTIVITY_TIMEOUT_SECONDS * 1000}"
        )
        cdk.CfnOutput(
            self,
            "PusherJsConfig",
            value=f"new Pusher('{first.key}', {{{client_options}}})",
            description="pusher-js: the client for the first app of the apps file",
        )
        cdk.CfnOutput(
            self,
            "LaravelEchoConfig",
            value=f"new Echo({{broadcaster: 'pusher', key: '{first.key}', {client_options}}})",
            description="Laravel Echo: the client for the first app of the apps file",
        )
        read_secret = self.app_secrets.read_command(first.app_id)
        cdk.CfnOutput(
            self,
            "LaravelEnv",
            # One variable per line, ready to paste: the backend's (config/broadcasting.php), then the VITE_ ones
            # Echo reads (resources/js/echo.js), as `php artisan install:broadcasting` writes them and as the
            # README's local block has them. The secret stays where it is (Secrets Manager or SSM); the command
            # on its line prints it (the LaravelEnvSecret output is that command alone).
            value="\n".join(
                [
                    "BROADCAST_CONNECTION=pusher",
                    f"PUSHER_APP_ID={first.app_id}",
                    f"PUSHER_APP_KEY={first.key}",
                    f"PUSHER_APP_SECRET=  # {read_secret}",
                    f"PUSHER_HOST={host}",
                    "PUSHER_PORT=443",
                    "PUSHER_SCHEME=https",
                    "PUSHER_APP_CLUSTER=mt1",
                    "",
                    'VITE_PUSHER_APP_KEY="${PUSHER_APP_KEY}"',
                    'VITE_PUSHER_HOST="${PUSHER_HOST}"',
                    'VITE_PUSHER_PORT="${PUSHER_PORT}"',
                    'VITE_PUSHER_SCHEME="${PUSHER_SCHEME}"',
                    'VITE_PUSHER_APP_CLUSTER="${PUSHER_APP_CLUSTER}"',
                ]
            ),
            description="Laravel backend .env for the first app (fill PUSHER_APP_SECRET with LaravelEnvSecret)",
        )
        cdk.CfnOutput(
            self,
            "LaravelEnvSecret",
            value=f"echo PUSHER_APP_SECRET=$({read_secret})",
            description="prints the PUSHER_APP_SECRET line of the first app (run it with the deploying credentials)",
        )
        for entry in self.config.apps:
            cdk.CfnOutput(
                self,
                f"AppSecret{app_identifier(entry.app_id)}",
                value=self.app_secrets.location(entry.app_id),
                description=f"where app {entry.app_id}'s secret is (key {entry.key}): Secrets Manager ARN or SSM "
                "parameter",
            )
        if self.monitoring is None:
            return
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={self.region}#dashboards:name="
            f"{self.monitoring.dashboard.dashboard_name}",
        )


def _grant_invoke(target: lambda_.IFunction, caller: lambda_.IFunction) -> None:
    """``lambda:InvokeFunction`` on the unqualified function only (``grant_invoke`` would add ``:*``)."""
    caller.add_to_role_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[target.function_arn]))


def _construct_id(name: str) -> str:
    """``http_api`` -> ``HttpApi``: construct ids and output names in CloudFormation's style."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").replace(".", "_").split("_"))
