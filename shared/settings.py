"""The one settings model: defaults, then the JSON config file, then ``SOCKLESS_*`` environment variables."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.types import AppId

WebhookEventType = Literal[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
]
ALL_WEBHOOK_EVENTS: tuple[WebhookEventType, ...] = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
)


class _Strict(BaseModel):
    """Unknown keys are refused so a typo in the config file is an error, never a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LambdaTarget(_Strict):
    function_name: str
    region: str = "us-east-1"


class WebhookFilter(_Strict):
    channel_prefix: str | None = None
    channel_suffix: str | None = None
    channel_pattern: str | None = None

    @field_validator("channel_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:  # not a ValueError: pydantic would let it escape without the field name
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    def matches(self, channel: str | None) -> bool:
        if channel is None:
            return True
        if self.channel_prefix is not None and not channel.startswith(self.channel_prefix):
            return False
        if self.channel_suffix is not None and not channel.endswith(self.channel_suffix):
            return False
        return self.channel_pattern is None or re.search(self.channel_pattern, channel) is not None


class WebhookConfig(_Strict):
    """One webhook target of an app: an HTTP URL or an AWS Lambda function (Sockudo's fields)."""

    url: str | None = None
    lambda_function: str | None = None
    lambda_: LambdaTarget | None = Field(default=None, alias="lambda")
    event_types: tuple[WebhookEventType, ...] = ALL_WEBHOOK_EVENTS
    filter: WebhookFilter = WebhookFilter()
    headers: dict[str, str] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_target(self) -> WebhookConfig:
        targets = [t for t in (self.url, self.lambda_function, self.lambda_) if t is not None]
        if len(targets) != 1:
            raise ValueError("a webhook needs exactly one of 'url', 'lambda' or 'lambda_function'")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("webhook 'url' must start with http:// or https://")
        return self

    @property
    def lambda_target(self) -> LambdaTarget | None:
        if self.lambda_ is not None:
            return self.lambda_
        if self.lambda_function is not None:
            return LambdaTarget(function_name=self.lambda_function)
        return None


class AppConfig(_Strict):
    """An app, with Sockudo's field names and Pusher's published limits as defaults."""

    id: AppId
    key: str = Field(min_length=1)
    secret: str = Field(min_length=1)
    enabled: bool = True
    max_connections: int | None = Field(default=None, ge=0)
    enable_client_messages: bool = False
    max_client_events_per_second: int = Field(default=10, ge=1)
    # Refused client events (over the per-second limit) a connection may collect within
    # 10 s (shared/engine/channels.py); the next one closes it with 4301 (docs/cost.md#abuse). None: never.
    max_client_event_refusals: int | None = Field(default=50, ge=1)
    max_presence_members_per_channel: int = Field(default=100, ge=1)
    max_presence_member_size_in_kb: float = Field(default=1, gt=0)
    max_channel_name_length: int = Field(default=200, ge=1)
    max_event_channels_at_once: int = Field(default=100, ge=1)
    max_event_name_length: int = Field(default=200, ge=1)
    max_event_payload_in_kb: float = Field(default=10, gt=0)
    max_event_batch_size: int = Field(default=10, ge=1)
    max_backend_events_per_second: int | None = Field(default=None, ge=1)
    max_read_requests_per_second: int | None = Field(default=None, ge=1)
    enable_user_authentication: bool = False
    enable_watchlist_events: bool = False
    enable_subscription_count: bool = False
    allowed_origins: tuple[str, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()

    @field_validator("id")
    @classmethod
    def _id_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-.]{1,64}", value):
            raise ValueError("app id must be 1-64 characters of A-Z a-z 0-9 _ - .")
        return value


class StoreSettings(_Strict):
    driver: Literal["memory", "redis", "dynamodb"] = "memory"
    url: str | None = None
    table_name: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    prefix: str = "sockless"
    # Redis (docs/redis.md): a cluster-mode client for Redis Cluster / ElastiCache Serverless; every key
    # expires after ttl_seconds without a write (0: never); a local-server node silent for lease_seconds
    # is presumed dead and its connections are removed by a peer.
    cluster_mode: bool = False
    ttl_seconds: int = Field(default=86400, ge=0)
    lease_seconds: float = Field(default=10.0, gt=0)
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    # Redis cluster bus (docs/operating-limits.md): a channel broadcast no peer could take yet is kept and
    # published again for up to replay_seconds, within replay_mb; past either bound publishes are refused (503).
    replay_seconds: float = Field(default=30.0, gt=0)
    replay_mb: int = Field(default=64, ge=1)


class QueueSettings(_Strict):
    driver: Literal["memory", "redis", "sqs"] = "memory"
    url: str | None = None
    queue_url: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # Redis (docs/redis.md): url defaults to store.url; jobs received and not acked come back after
    # visibility_timeout_seconds.
    prefix: str = "sockless"
    cluster_mode: bool = False
    visibility_timeout_seconds: float = Field(default=120.0, gt=0)


class RateLimit(_Strict):
    max_requests: int = Field(ge=1)
    window_seconds: float = Field(default=1.0, gt=0)


class RateLimits(_Strict):
    """Per-IP limits; ``None`` switches a limit off (the default, like soketi)."""

    http_per_ip: RateLimit | None = None
    connections_per_ip: RateLimit | None = None


class TransportSettings(_Strict):
    """The local server's bounds on what one client, or all of them together, can hold (docs/operating-limits.md).

    ``header_timeout_seconds``: an HTTP request (the WebSocket upgrade included) must complete its head this long
    after the connection opens or its first byte arrives, else 408 and close (slowloris).
    ``body_timeout_seconds``: a REST request's body must arrive within this long after its head, else 408 and close.
    ``keepalive_seconds``: an idle keep-alive connection is closed after this long.
    ``max_pending_per_address``: connections one address may hold open before their upgrade; more are answered
    503 at once (0: no cap). Behind a proxy every client has the proxy's address: raise it there.
    ``max_write_buffer_kb``: frames held for one socket whose client does not read fast enough; past it the
    socket is closed with 4100. ``write_budget_mb``: the same, for all sockets of the process together; past
    it the sockets holding the most are closed with 4100 first.
    """

    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    keepalive_seconds: float = Field(default=60.0, gt=0)
    max_pending_per_address: int = Field(default=256, ge=0)
    max_write_buffer_kb: int = Field(default=4096, ge=64)
    write_budget_mb: int = Field(default=128, ge=1)


class WebhookSettings(_Strict):
    batching: bool = False
    batch_duration_ms: int = Field(default=50, ge=1)
    batch_size: int = Field(default=100, ge=1)
    delay_seconds: float = Field(default=3.0, ge=0)
    retry_max_elapsed_seconds: float = Field(default=300.0, ge=0)
    retry_initial_backoff_seconds: float = Field(default=1.0, gt=0)
    retry_max_backoff_seconds: float = Field(default=60.0, gt=0)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=32, ge=1)


class AwsSettings(_Strict):
    """Where the Lambda handlers find the rest of the deployment. CDK sets these; the emulator points the
    endpoint URLs at itself, which is the only thing that differs between emulation and AWS."""

    region: str | None = None
    # https://{api-id}.execute-api.{region}.amazonaws.com/{stage}; when unset, the WebSocket handlers derive it
    # from the event (domainName + stage) and other functions cannot post.
    management_endpoint_url: str | None = None
    lambda_endpoint_url: str | None = None
    welcome_function: str | None = None  # the async "welcome" Lambda that $connect invokes
    fanout_function: str | None = None  # parallel chunks of a large broadcast
    welcome_retry_interval_ms: int = Field(default=50, ge=1)
    welcome_retry_seconds: float = Field(default=3.0, gt=0)
    # Throttling of the welcome's post is retried on its own budget (under the welcome function's 10 s timeout).
    welcome_throttle_seconds: float = Field(default=8.0, gt=0)
    # The sweep asks API Gateway about every connection once per this many seconds (410: cleaned up like
    # $disconnect), so a ghost lives at most this plus one schedule period (docs/aws.md "The sweep").
    stale_after_seconds: int = Field(default=300, ge=1)
    # API Gateway closes every connection after 2 h: older records are dead without asking.
    max_connection_seconds: int = Field(default=7200, ge=1)
    fanout_chunk_size: int = Field(default=1000, ge=1)  # sockets one invocation posts to before handing on
    # Keep-alive connections one invocation posts on at once: a broadcast reaches at most this many posts per
    # round trip to API Gateway (64 at 10 ms: 6,400 posts/s), whatever its CPU (docs/aws.md "Fan-out").
    post_connections: int = Field(default=64, ge=1)


# The app `make serve` and the emulator run when the config names none. Its id is numeric because Pusher's are
# and the official Python SDK refuses any other (`pusher.Pusher(app_id="app-id")`: "Invalid app id"); 100001 is
# the id cdk/apps.example.json deploys, so the local and the deployed examples name one app. Config files may
# still use any id of `A-Za-z0-9_-.` (soketi's and Sockudo's "app-id" included).
DEFAULT_APP = AppConfig(
    id=AppId("100001"),
    key="app-key",
    secret="app-secret",
    enable_client_messages=True,
    enable_user_authentication=True,
    enable_watchlist_events=True,
    enable_subscription_count=True,
)


class Settings(BaseSettings):
    """Server-wide settings. Precedence: ``SOCKLESS_*`` environment > config file > defaults."""

    model_config = SettingsConfigDict(env_prefix="SOCKLESS_", env_nested_delimiter="__", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=6001, ge=0, le=65535)
    metrics_port: int | None = Field(default=9601, ge=0, le=65535)
    apps: tuple[AppConfig, ...] = (DEFAULT_APP,)
    store: StoreSettings = StoreSettings()
    queue: QueueSettings = QueueSettings()
    webhooks: WebhookSettings = WebhookSettings()
    rate_limits: RateLimits = RateLimits()
    transport: TransportSettings = TransportSettings()
    aws: AwsSettings = AwsSettings()
    activity_timeout: int = Field(default=120, ge=1)
    pong_timeout: int = Field(default=30, ge=1)
    cache_ttl_seconds: int = Field(default=1800, ge=1)
    max_frame_kb: int = Field(default=64, ge=1)
    max_http_body_kb: int = Field(default=1024, ge=1)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    debug_console: bool = False
    admin_token: str | None = None
    log_level: str = "INFO"
    # The local server's event loop. uvloop (the ``server`` extra) runs its transports in C: fan-out takes
    # 0.6-0.85x the CPU per delivery, connection setup a little more (bench/RESULTS.md). "auto": uvloop when
    # installed.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("apps")
    @classmethod
    def _unique_apps(cls, apps: tuple[AppConfig, ...]) -> tuple[AppConfig, ...]:
        for attr in ("id", "key"):
            values = [getattr(app, attr) for app in apps]
            if len(values) != len(set(values)):
                raise ValueError(f"two apps share the same {attr}")
        return apps

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file arrives as init kwargs; the environment wins over it and CLI flags over both.
        return (_FlagSource(settings_cls), env_settings, init_settings)


_FLAGS: ContextVar[Mapping[str, Any]] = ContextVar("sockless_cli_flags", default=MappingProxyType({}))


class _FlagSource(PydanticBaseSettingsSource):
    """Command-line flags (``--port`` ...): the most specific setting a user can give, so they win."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _FLAGS.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FLAGS.get())


class ConfigFileError(ValueError):
    """The config file is unreadable or not a JSON object."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the JSON config file (if any), let ``SOCKLESS_*`` variables win over it and ``overrides`` (CLI flags)
    win over both.

    Raises ``ConfigFileError`` or pydantic's ``ValidationError`` (which names the bad field).
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigFileError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"config file {config_file} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigFileError(f"config file {config_file} must hold a JSON object")
        data.update(raw)
    token = _FLAGS.set({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**data)
    finally:
        _FLAGS.reset(token)
