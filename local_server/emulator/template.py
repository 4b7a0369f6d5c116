"""What the emulator takes from the synthesized CloudFormation template (``synth.py``): the functions, their
roles, the APIs' routes and integrations, the table, the queues, the event source mapping and the schedule.

Every intrinsic the template uses (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``, pseudo parameters) is
resolved to the emulator's own names and endpoints: a table ``Ref`` becomes the table moto serves, a queue
``Ref`` its moto URL, the WebSocket API's ``execute-api`` host the emulator's management endpoint. What the
loader cannot follow is collected in ``Deployment.notes`` and printed at start-up (``server.startup_report``).

One input is not the template's: the apps. The template is synthesized with the example apps file: its
``SOCKLESS_APPS`` holds their settings and ``APP_SECRETS`` where the functions read their secrets on AWS. The
emulator's apps come from its config, secrets included, so every function the template gives
``SOCKLESS_APPS`` gets the config's apps there instead and no ``APP_SECRETS``; the webhook worker's
``lambda:InvokeFunction`` grant for Lambda webhook targets and whether it polls its queue are derived from
them by the stack's rules, for that worker only (``Deployment.webhook_workers``, ``Deployment.polling``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
URL_SUFFIX = "amazonaws.com"
APPS_VARIABLE = "SOCKLESS_APPS"
SECRETS_VARIABLE = "APP_SECRETS"  # where the functions read app secrets on AWS (functions/app_secrets.py)
WEBHOOK_QUEUE_VARIABLE = "SOCKLESS_QUEUE__QUEUE_URL"
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")
_DYNAMIC = re.compile(r"\{\{resolve:[^}]*\}\}")
# A table's stream ARN ends in its label, the time the stream was enabled; the emulator's are all enabled at once.
STREAM_LABEL = "2024-01-01T00:00:00.000"


class Unresolvable(ValueError):
    """An intrinsic the loader does not know how to resolve (named in the message)."""


@dataclass(frozen=True)
class Endpoints:
    """Where the emulator serves what AWS would: moto (DynamoDB, SQS) and the AWS endpoint (management
    API and Lambda Invoke)."""

    moto_url: str
    aws_url: str
    region: str = "us-east-1"
    account: str = ACCOUNT_ID
    stack_name: str = "sockless"


@dataclass(frozen=True)
class AsyncConfig:
    """``AWS::Lambda::EventInvokeConfig``: what Lambda does with an ``Event`` invocation that fails."""

    max_retries: int = 2  # Lambda's defaults when the template sets nothing
    max_event_age: float = 6 * 3600.0
    on_success: str | None = None  # a destination ARN
    on_failure: str | None = None


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_seconds: float
    reserved_concurrency: int | None
    role: str  # the role's logical id
    asynchronous: AsyncConfig = field(default_factory=AsyncConfig)
    # The template's Runtime (``python3.13``): what AWS would run; the emulator runs every handler in its own
    # process, under its own Python, whatever this says (server.startup_report says so).
    runtime: str = ""
    statements: list[dict[str, Any]] = field(default_factory=list)  # resolved IAM statements of its role
    system_log_level: str = "INFO"  # LoggingConfig.SystemLogLevel: at WARN Lambda writes no START/END/REPORT


@dataclass(frozen=True)
class Integration:
    """One API Gateway integration: its type, and what the emulator needs to run it."""

    logical_id: str
    type: str  # AWS_PROXY, MOCK, AWS, HTTP_PROXY ...
    uri: str | None  # resolved IntegrationUri
    function: str | None  # the Lambda function's name, for a Lambda integration
    request_templates: dict[str, str] = field(default_factory=dict)
    response_templates: dict[str, str] = field(default_factory=dict)  # of its $default integration response
    template_selection: str | None = None
    payload_format: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # the resolved properties, for other types


@dataclass
class Api:
    logical_id: str
    id: str
    protocol: str  # WEBSOCKET or HTTP
    route_selection: str | None
    routes: dict[str, Integration]
    stage: str = "$default"
    throttle_rate: float | None = None
    throttle_burst: int | None = None
    two_way_routes: set[str] = field(default_factory=set)  # routes with a route response
    access_logs: bool = False  # the stage has AccessLogSettings (a billed log line per request)


@dataclass(frozen=True)
class Table:
    name: str
    arn: str
    key_schema: list[dict[str, str]]
    attributes: list[dict[str, str]]
    indexes: list[dict[str, Any]]
    ttl_attribute: str | None
    stream_view_type: str | None = None  # StreamSpecification.StreamViewType: the table has a stream

    @property
    def stream_arn(self) -> str | None:
        return f"{self.arn}/stream/{STREAM_LABEL}" if self.stream_view_type else None


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    arn: str
    url: str
    attributes: dict[str, str]  # CreateQueue attributes (RedrivePolicy resolved to the DLQ's ARN)


@dataclass(frozen=True)
class EventSourceMapping:
    function: str
    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool
    max_concurrency: int | None
    batching_window: float
    enabled: bool = True  # ``Enabled``: a disabled mapping does not poll


@dataclass(frozen=True)
class StreamSource:
    """An ``AWS::Lambda::EventSourceMapping`` reading a DynamoDB table's stream (``streams.py`` runs it)."""

    function: str
    table: str  # the table's name
    stream_arn: str
    batch_size: int = 100
    starting_position: str = "LATEST"
    parallelization_factor: int = 1
    max_retries: int = -1  # -1: until the record expires (Lambda's default)
    max_record_age: float = -1.0
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    on_failure: str | None = None  # a destination ARN
    filters: tuple[str, ...] = ()  # FilterCriteria patterns (JSON)
    enabled: bool = True


@dataclass(frozen=True)
class Schedule:
    expression: str
    function: str
    seconds: float | None  # None when the expression is not a rate()
    retries: int | None


@dataclass
class Deployment:
    endpoints: Endpoints
    functions: dict[str, Function]  # by name
    apis: dict[str, Api]  # by protocol: "WEBSOCKET", "HTTP"
    tables: list[Table]
    queues: dict[str, Queue]  # by ARN
    mappings: list[EventSourceMapping]
    schedules: list[Schedule]
    notes: list[str]  # what the template asks and the emulator does not do (start-up report)
    source: str = ""
    role_statements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by role ARN
    streams: list[StreamSource] = field(default_factory=list)  # mappings reading a DynamoDB stream

    def function_by_handler(self, handler: str) -> Function:
        found = [f for f in self.functions.values() if f.handler == handler]
        if len(found) != 1:
            raise KeyError(f"{len(found)} functions with handler {handler}")
        return found[0]

    def function_by_arn(self, arn: str) -> Function | None:
        name = arn.split(":")[6] if arn.startswith("arn:") else arn
        return self.functions.get(name)

    def webhook_queues(self) -> set[str]:
        """The ARN of the webhook queue: the queue the functions' ``SOCKLESS_QUEUE__QUEUE_URL`` names."""
        urls = {f.environment.get(WEBHOOK_QUEUE_VARIABLE) for f in self.functions.values()} - {None}
        return {arn for arn, queue in self.queues.items() if queue.url in urls}

    def polling(self, *, webhooks: bool) -> list[EventSourceMapping]:
        """The mappings that poll: each as its ``Enabled`` says, but the webhook queue's when ``webhooks`` (an
        app of the emulator's config has webhooks). The stack enables that mapping only for an apps file with
        webhooks (``cdk.components.webhooks.polled``); the template was synthesized with the example apps, so
        the rule is applied to the config's apps, as for the worker's grants."""
        queues = self.webhook_queues()
        return [m for m in self.mappings if (webhooks if m.queue_arn in queues else m.enabled)]

    def webhook_workers(self) -> set[str]:
        """The functions reading the webhook queue through an event source mapping (enabled or not): where the
        stack grants invoking Lambda webhook targets."""
        queues = self.webhook_queues()
        return {m.function for m in self.mappings if m.queue_arn in queues}

    @property
    def websocket(self) -> Api:
        return self.apis["WEBSOCKET"]

    @property
    def http(self) -> Api:
        return self.apis["HTTP"]


class Resolver:
    """Resolves a template's intrinsics against the emulator's physical names."""

    def __init__(self, resources: dict[str, Any], endpoints: Endpoints) -> None:
        self.resources = resources
        self.e = endpoints
        self.api_ids: dict[str, str] = {}
        stripped = {logical: re.sub(r"[0-9A-F]{8}$", "", logical) for logical in resources}
        counts: dict[str, int] = {}
        for short in stripped.values():
            counts[short] = counts.get(short, 0) + 1
        self.readable = {logical: short for logical, short in stripped.items() if short and counts[short] == 1}
        for index, (logical, resource) in enumerate(sorted(resources.items())):
            if resource["Type"] == "AWS::ApiGatewayV2::Api":
                # API Gateway ids are 10 lowercase letters/digits.
                self.api_ids[logical] = f"emul{index:06d}"

    def arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.e.region}:{self.e.account}:{rest}"

    def name(self, logical: str) -> str:
        """A physical name like CloudFormation's (``{stack}-{logical id}``), without the logical id's hash
        suffix where that stays unique: ``sockless-ConnectFunction``; a FIFO queue's ends in ``.fifo``, as
        SQS requires and CloudFormation does when it names one."""
        resource = self.resources.get(logical, {})
        fifo = resource.get("Type") == "AWS::SQS::Queue" and resource.get("Properties", {}).get("FifoQueue") is True
        return f"{self.e.stack_name}-{self.readable.get(logical, logical)}" + (".fifo" if fifo else "")

    def ref(self, logical: str) -> str:
        pseudo = {
            "AWS::Region": self.e.region,
            "AWS::AccountId": self.e.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.e.stack_name,
            "AWS::NoValue": "",
        }
        if logical in pseudo:
            return pseudo[logical]
        kind = self._type(logical)
        if kind == "AWS::SQS::Queue":
            return f"{self.e.moto_url}/{self.e.account}/{self.name(logical)}"
        if kind == "AWS::ApiGatewayV2::Api":
            return self.api_ids[logical]
        if kind == "AWS::SecretsManager::Secret":
            return self.arn("secretsmanager", f"secret:{self.name(logical)}")
        if kind in ("AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Route"):
            return logical
        return self.name(logical)

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self._type(logical)
        name = self.name(logical)
        if attribute == "Arn":
            arns = {
                "AWS::Lambda::Function": lambda: self.arn("lambda", f"function:{name}"),
                "AWS::DynamoDB::GlobalTable": lambda: self.arn("dynamodb", f"table/{name}"),
                "AWS::DynamoDB::Table": lambda: self.arn("dynamodb", f"table/{name}"),
                "AWS::SQS::Queue": lambda: self.arn("sqs", name),
                "AWS::Logs::LogGroup": lambda: self.arn("logs", f"log-group:{name}:*"),
                "AWS::IAM::Role": lambda: f"arn:aws:iam::{self.e.account}:role/{name}",
                "AWS::Events::Rule": lambda: self.arn("events", f"rule/{name}"),
                "AWS::SNS::Topic": lambda: self.arn("sns", name),
            }
            if kind in arns:
                return arns[kind]()
        if kind in ("AWS::DynamoDB::GlobalTable", "AWS::DynamoDB::Table") and attribute == "StreamArn":
            return f"{self.arn('dynamodb', f'table/{name}')}/stream/{STREAM_LABEL}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return name
        if kind == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self.ref(logical)
        if kind == "AWS::ApiGatewayV2::Api" and attribute == "ApiEndpoint":
            scheme = "wss" if self.resources[logical]["Properties"].get("ProtocolType") == "WEBSOCKET" else "https"
            return f"{scheme}://{self.api_ids[logical]}.execute-api.{self.e.region}.{URL_SUFFIX}"
        raise Unresolvable(f"Fn::GetAtt {logical}.{attribute} ({kind})")

    def _type(self, logical: str) -> str:
        try:
            return str(self.resources[logical]["Type"])
        except KeyError:
            raise Unresolvable(f"Ref to {logical}, which is not in the template") from None

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic resolved (strings stay strings, lists and dicts are walked)."""
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return str(separator).join(str(self.value(part)) for part in self.value(parts))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return _SUB.sub(lambda m: str(variables.get(m.group(1)) or self._sub_name(m.group(1))), text)
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key.startswith("Fn::") or key == "Condition":
                raise Unresolvable(key)
        return {k: self.value(v) for k, v in node.items()}

    def _sub_name(self, name: str) -> str:
        logical, _, attribute = name.partition(".")
        return self.get_att(logical, attribute) if attribute else self.ref(logical)

    def management_url(self, text: str) -> str:
        """An ``execute-api`` URL of one of the template's APIs, pointed at the emulator's AWS endpoint."""
        for api_id in self.api_ids.values():
            text = text.replace(f"https://{api_id}.execute-api.{self.e.region}.{URL_SUFFIX}", self.e.aws_url)
        return text


def load(template: dict[str, Any], endpoints: Endpoints, apps_json: str) -> Deployment:
    """The deployment the template describes, resolved for ``endpoints``, with ``apps_json`` (the config's
    apps, secrets included) as ``SOCKLESS_APPS``."""
    resources: dict[str, Any] = template["Resources"]
    r = Resolver(resources, endpoints)
    notes: list[str] = []

    def of_type(kind: str) -> dict[str, dict[str, Any]]:
        return {k: v.get("Properties", {}) for k, v in resources.items() if v["Type"] == kind}

    # -- functions, their roles and async-invoke configuration ---------------------------------------------
    statements_by_role: dict[str, list[dict[str, Any]]] = {}
    for logical, props in of_type("AWS::IAM::Policy").items():
        for role in props.get("Roles", []):
            role_logical = role["Ref"] if isinstance(role, dict) and "Ref" in role else None
            if role_logical is None:
                notes.append(f"IAM: policy {logical} is attached to a role by name; not enforced")
                continue
            statements_by_role.setdefault(role_logical, []).extend(
                _statements(r, props["PolicyDocument"], f"policy {logical}", notes)
            )
    for logical, props in of_type("AWS::IAM::Role").items():
        for inline in props.get("Policies", []):
            statements_by_role.setdefault(logical, []).extend(
                _statements(r, inline["PolicyDocument"], f"role {logical}", notes)
            )
        if props.get("ManagedPolicyArns"):
            notes.append(f"IAM: role {logical} has managed policies, which the emulator cannot read (denied)")

    # Roles assumed by services (API Gateway integration credentials), by ARN.
    role_statements = {r.get_att(logical, "Arn"): statements for logical, statements in statements_by_role.items()}
    functions: dict[str, Function] = {}
    for logical, props in of_type("AWS::Lambda::Function").items():
        name = r.ref(logical)
        role_att = props.get("Role", {}).get("Fn::GetAtt", [None])[0]
        env: dict[str, str] = {}
        for key, raw in (props.get("Environment") or {}).get("Variables", {}).items():
            if key == APPS_VARIABLE:
                env[key] = apps_json
                continue
            if key == SECRETS_VARIABLE:  # the config's apps carry their secrets: nothing to read at run time
                continue
            try:
                text = str(r.value(raw))
            except Unresolvable as exc:
                notes.append(f"{name}: environment variable {key} not set ({exc})")
                continue
            if _DYNAMIC.search(text):
                notes.append(f"{name}: environment variable {key} holds a dynamic reference; not set")
                continue
            env[key] = r.management_url(text)
        if props.get("VpcConfig"):
            notes.append(f"{name}: VPC placement is not emulated (the function reaches everything)")
        if props.get("Layers"):
            notes.append(f"{name}: layers are not emulated")
        functions[name] = Function(
            logical_id=logical,
            name=name,
            arn=r.get_att(logical, "Arn"),
            handler=str(props["Handler"]),
            environment=env,
            memory_mb=int(props.get("MemorySize", 128)),
            timeout_seconds=float(props.get("Timeout", 3)),
            reserved_concurrency=(
                int(props["ReservedConcurrentExecutions"]) if "ReservedConcurrentExecutions" in props else None
            ),
            role=str(role_att),
            statements=statements_by_role.get(str(role_att), []),
            system_log_level=str((props.get("LoggingConfig") or {}).get("SystemLogLevel", "INFO")),
            runtime=str(props.get("Runtime", "")),
        )
    for logical, props in of_type("AWS::Lambda::EventInvokeConfig").items():
        function = functions.get(str(r.value(props["FunctionName"])))
        if function is None:
            notes.append(f"event invoke config {logical}: unknown function")
            continue
        destinations = r.value(props.get("DestinationConfig", {}))
        function.asynchronous = AsyncConfig(
            max_retries=int(props.get("MaximumRetryAttempts", 2)),
            max_event_age=float(props.get("MaximumEventAgeInSeconds", 6 * 3600)),
            on_success=(destinations.get("OnSuccess") or {}).get("Destination"),
            on_failure=(destinations.get("OnFailure") or {}).get("Destination"),
        )

    # -- APIs ---------------------------------------------------------------------------------------------
    integrations: dict[str, Integration] = {}
    responses: dict[str, dict[str, Any]] = {}
    for props in of_type("AWS::ApiGatewayV2::IntegrationResponse").values():
        responses[props["IntegrationId"]["Ref"]] = props
    for logical, props in of_type("AWS::ApiGatewayV2::Integration").items():
        try:
            uri = r.value(props["IntegrationUri"]) if "IntegrationUri" in props else None
        except Unresolvable as exc:
            notes.append(f"integration {logical}: {exc}")
            uri = None
        target: str | None = None
        if uri and (":lambda:" in uri or uri.startswith("arn:aws:lambda:")):
            arn = re.sub(r"^.*/functions/(.*)/invocations$", r"\1", str(uri))
            found = next((f for f in functions.values() if f.arn == arn), None)
            target = found.name if found else None
        response = responses.get(logical, {})
        integrations[logical] = Integration(
            logical_id=logical,
            type=str(props["IntegrationType"]),
            uri=str(uri) if uri else None,
            function=target,
            request_templates=dict(props.get("RequestTemplates", {})),
            response_templates=dict(response.get("ResponseTemplates", {})),
            template_selection=props.get("TemplateSelectionExpression"),
            payload_format=props.get("PayloadFormatVersion"),
            properties=_try(r, props, notes, f"integration {logical}"),
        )
    apis: dict[str, Api] = {}
    route_responses = {props["RouteId"]["Ref"] for props in of_type("AWS::ApiGatewayV2::RouteResponse").values()}
    for logical, props in of_type("AWS::ApiGatewayV2::Api").items():
        protocol = str(props["ProtocolType"])
        if protocol in apis:
            notes.append(f"a second {protocol} API ({logical}) is not served")
            continue
        apis[protocol] = Api(
            logical_id=logical,
            id=r.ref(logical),
            protocol=protocol,
            route_selection=props.get("RouteSelectionExpression"),
            routes={},
        )
    by_logical = {api.logical_id: api for api in apis.values()}
    for logical, props in of_type("AWS::ApiGatewayV2::Route").items():
        route_api = by_logical.get(props["ApiId"]["Ref"])
        if route_api is None:
            continue
        target = str(r.value(props.get("Target", "")))
        integration = integrations.get(target.removeprefix("integrations/"))
        if integration is None:
            notes.append(f"route {props['RouteKey']}: no integration target; not served")
            continue
        if props.get("AuthorizationType", "NONE") != "NONE":
            notes.append(f"route {props['RouteKey']}: authorization {props['AuthorizationType']} is not emulated")
        route_api.routes[str(props["RouteKey"])] = integration
        if logical in route_responses:
            route_api.two_way_routes.add(str(props["RouteKey"]))
    for props in of_type("AWS::ApiGatewayV2::Stage").values():
        stage_api = by_logical.get(props["ApiId"]["Ref"])
        if stage_api is None:
            continue
        stage_api.stage = str(props["StageName"])
        stage_api.access_logs = "AccessLogSettings" in props
        settings = props.get("DefaultRouteSettings", {})
        stage_api.throttle_rate = settings.get("ThrottlingRateLimit")
        stage_api.throttle_burst = settings.get("ThrottlingBurstLimit")
    for api in apis.values():
        if api.throttle_rate is not None:
            notes.append(
                f"{api.protocol} API stage throttling ({api.throttle_rate}/s, burst {api.throttle_burst}) "
                "is not enforced (see --throttle-posts for the management API's 429)"
            )

    # -- state, queues, event sources, schedules ----------------------------------------------------------
    tables = []
    for kind in ("AWS::DynamoDB::GlobalTable", "AWS::DynamoDB::Table"):
        for logical, props in of_type(kind).items():
            ttl = props.get("TimeToLiveSpecification") or {}
            tables.append(
                Table(
                    name=r.ref(logical),
                    arn=r.get_att(logical, "Arn"),
                    key_schema=props["KeySchema"],
                    attributes=props["AttributeDefinitions"],
                    indexes=props.get("GlobalSecondaryIndexes", []),
                    ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
                    stream_view_type=(props.get("StreamSpecification") or {}).get("StreamViewType"),
                )
            )
    queues: dict[str, Queue] = {}
    attribute_names = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "FifoQueue",
                       "ContentBasedDeduplication", "ReceiveMessageWaitTimeSeconds", "MaximumMessageSize")  # fmt: skip
    for logical, props in of_type("AWS::SQS::Queue").items():
        resolved = r.value(props)
        attributes = {k: str(resolved[k]).lower() if isinstance(resolved[k], bool) else str(resolved[k])
                      for k in attribute_names if k in resolved}  # fmt: skip
        if "RedrivePolicy" in resolved:
            attributes["RedrivePolicy"] = json.dumps(resolved["RedrivePolicy"])
        name = r.name(logical)
        queue = Queue(logical, name, r.get_att(logical, "Arn"), r.ref(logical), attributes)
        queues[queue.arn] = queue
    mappings = []
    streams = []
    tables_by_stream = {table.stream_arn: table for table in tables if table.stream_arn}
    for logical, props in of_type("AWS::Lambda::EventSourceMapping").items():
        resolved = r.value(props)
        source = str(resolved.get("EventSourceArn", ""))
        if source in tables_by_stream:
            streams.append(_stream_source(resolved, tables_by_stream[source]))
            continue
        if source not in queues:
            notes.append(f"event source mapping {logical}: source {source} is not an SQS queue; not polled")
            continue
        mappings.append(
            EventSourceMapping(
                function=str(resolved["FunctionName"]).split(":")[-1],
                queue_arn=source,
                batch_size=int(resolved.get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures" in resolved.get("FunctionResponseTypes", []),
                max_concurrency=(resolved.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                batching_window=float(resolved.get("MaximumBatchingWindowInSeconds", 0)),
                enabled=str(resolved.get("Enabled", True)).lower() != "false",
            )
        )
    schedules = []
    for logical, props in of_type("AWS::Events::Rule").items():
        expression = props.get("ScheduleExpression")
        if not expression:
            notes.append(f"rule {logical}: event patterns are not emulated")
            continue
        for rule_target in r.value(props.get("Targets", [])):
            function = next((f for f in functions.values() if f.arn == rule_target["Arn"]), None)
            if function is None:
                notes.append(f"rule {logical}: target {rule_target['Arn']} is not a function of the stack")
                continue
            schedules.append(
                Schedule(
                    expression=str(expression),
                    function=function.name,
                    seconds=_rate_seconds(str(expression)),
                    retries=(rule_target.get("RetryPolicy") or {}).get("MaximumRetryAttempts"),
                )
            )
    for kind in ("AWS::CloudFront::Distribution", "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard",
                 "AWS::SNS::Topic", "AWS::ElastiCache::ServerlessCache", "AWS::EC2::VPC"):  # fmt: skip
        count = len(of_type(kind))
        if count:
            notes.append(f"{count} {kind} not emulated")
    return Deployment(
        endpoints,
        functions,
        apis,
        tables,
        queues,
        mappings,
        schedules,
        notes,
        role_statements=role_statements,
        streams=streams,
    )


def _stream_source(resolved: dict[str, Any], table: Table) -> StreamSource:
    """A stream mapping's settings (Lambda developer guide, "Lambda parameters for Amazon DynamoDB event source
    mappings": the defaults are Lambda's)."""
    destination = ((resolved.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    filters = ((resolved.get("FilterCriteria") or {}).get("Filters")) or []
    return StreamSource(
        function=str(resolved["FunctionName"]).split(":")[-1],
        table=table.name,
        stream_arn=str(table.stream_arn),
        batch_size=int(resolved.get("BatchSize", 100)),
        starting_position=str(resolved.get("StartingPosition", "LATEST")),
        parallelization_factor=int(resolved.get("ParallelizationFactor", 1)),
        max_retries=int(resolved.get("MaximumRetryAttempts", -1)),
        max_record_age=float(resolved.get("MaximumRecordAgeInSeconds", -1)),
        bisect_on_error=str(resolved.get("BisectBatchOnFunctionError", False)).lower() == "true",
        report_batch_item_failures="ReportBatchItemFailures" in resolved.get("FunctionResponseTypes", []),
        on_failure=str(destination) if destination else None,
        filters=tuple(str(f.get("Pattern", "{}")) for f in filters),
        enabled=str(resolved.get("Enabled", True)).lower() != "false",
    )


def _try(r: Resolver, props: dict[str, Any], notes: list[str], what: str) -> dict[str, Any]:
    try:
        return dict(r.value(props))
    except Unresolvable as exc:
        notes.append(f"{what}: {exc}")
        return {}


def _statements(r: Resolver, document: dict[str, Any], what: str, notes: list[str]) -> list[dict[str, Any]]:
    out = []
    for statement in document.get("Statement", []):
        try:
            out.append(r.value(statement))
        except Unresolvable as exc:
            notes.append(f"IAM: a statement of {what} cannot be resolved ({exc}); it grants nothing here")
    return out


def _rate_seconds(expression: str) -> float | None:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if match is None:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return float(int(match.group(1)) * unit)
