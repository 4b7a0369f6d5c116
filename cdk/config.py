"""Deploy-time options: CDK context values (``-c key=value`` or cdk.json) and the apps file, validated once.

Everything a team may want to change without editing code is a context value; each is parsed here with a
clear error, so a typo fails ``cdk synth`` instead of producing a subtly different stack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from shared.settings import AppConfig

StoreKind = Literal["dynamodb", "valkey"]
PingRoute = Literal["mock", "lambda"]
# How $default orders a connection's frames: an SQS FIFO queue, a DynamoDB stream, or not at all.
OrderedFrames = Literal["fifo", "stream", "off"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APPS_FILE = REPO_ROOT / "cdk" / "apps.example.json"
# The retention periods CloudWatch Logs offers (up to a year).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 180, 365)
# Keys of an app entry that only the deployment understands (where its secret lives).
SECRET_KEYS = ("secret_arn", "secret_json_key", "secret_parameter")
# An SSM parameter name (Systems Manager user guide, "Requirements and constraints for parameter names").
PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,1011}")


class ConfigError(ValueError):
    """A context value or the apps file is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class AppEntry:
    """One app from the apps file: its settings without the secret, and where the secret comes from.

    ``secret_arn`` names an existing Secrets Manager secret (plain string, or JSON with ``secret_json_key``);
    ``secret_parameter`` an existing SSM Parameter Store SecureString (no monthly charge, docs/cost.md; every
    app of the file then has one: the functions read all secrets from one place); without either the stack
    generates a Secrets Manager secret. A literal ``secret`` is refused: it would land in the template.
    """

    settings: dict[str, Any]
    secret_arn: str | None = None
    secret_json_key: str | None = None
    secret_parameter: str | None = None

    @property
    def app_id(self) -> str:
        return str(self.settings["id"])

    @property
    def key(self) -> str:
        return str(self.settings["key"])


@dataclass(frozen=True)
class DeployConfig:
    store: StoreKind = "dynamodb"
    apps: tuple[AppEntry, ...] = ()
    ping_route: PingRoute = "mock"
    # $default through the SQS FIFO frames queue ("fifo", also true): one connection's frames take effect in the
    # order sent (docs/aws.md "Frames of one connection in order"); "stream": the same order through a DynamoDB
    # table's stream, with no idle cost (cdk/components/frames_stream.py); "off" (false): each frame invokes the
    # function directly (lower latency, frames of one connection may run concurrently and out of order).
    ordered_frames: OrderedFrames = "fifo"
    stage_name: str = "prod"
    log_retention_days: int = 30
    # Caps the fan-out function: a runaway broadcast loop must not eat the account's Lambda concurrency or
    # its API Gateway request budget (10,000/s, shared with every other API). 0 = no reservation.
    fanout_reserved_concurrency: int = 50
    webhooks_max_concurrency: int = 10
    alarm_email: str | None = None
    # What the stack bills while idle (docs/cost.md): 19 alarms and the dashboard ($4.90 a month), the engine's
    # EMF metrics (12 custom metrics per app, $3.60), and INFO logs (Lambda's START/END/REPORT lines and the
    # handlers' INFO lines, ~700 bytes an invocation). -c monitoring=false -c metrics=false -c log_level=WARNING
    # is the lean stack the cost report's targets are read from.
    monitoring: bool = True
    # An AWS Budgets cost budget (USD a month) that emails alarm_email at 80 % and 100 % of it: the stage
    # throttle alone allows a bill of thousands a month under abuse (docs/cost.md "The bill under abuse").
    budget_usd: int | None = None
    metrics: bool = True
    log_level: str = "INFO"
    # API Gateway access logs of both APIs: a line per WebSocket frame (pings included), connect, disconnect and
    # REST request, with the source IP. CloudWatch Logs bills the bytes ($0.72 a month for 1,000 connections and
    # 1 M deliveries a day, docs/cost.md); false drops them (the functions' own logs stay).
    access_logs: bool = True
    # The account-wide role API Gateway needs to write WebSocket access logs; off when the account has one.
    apigw_logging_role: bool = True
    stage_throttle_rate: int = 1000
    stage_throttle_burst: int = 500
    # A custom domain for the CloudFront host (needs an ACM certificate in us-east-1); DNS is yours to point.
    domain_name: str | None = None
    certificate_arn: str | None = None
    # Bump to make a deploy re-read the app secrets from Secrets Manager (see cdk/components/apps.py).
    apps_revision: str = "1"


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"context {name!r} must be true or false, not {value!r}")


def _ordered_frames(value: Any) -> OrderedFrames:
    text = str(value).lower()
    if text in ("fifo", "stream"):
        return text  # type: ignore[return-value]
    if text in ("off", "none"):
        return "off"
    try:
        return "fifo" if _flag(value, "ordered_frames") else "off"
    except ConfigError:
        raise ConfigError(f"context 'ordered_frames' must be fifo (or true), stream or false, not {value!r}") from None


def _budget(value: Any, alarm_email: Any) -> int | None:
    if value is None:
        return None
    if not alarm_email:
        raise ConfigError("context 'budget_usd' needs 'alarm_email': the budget's notifications go there")
    return _int(value, "budget_usd", minimum=1)


def _int(value: Any, name: str, *, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"context {name!r} must be an integer, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"context {name!r} must be >= {minimum}, not {number}")
    return number


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"context {name!r} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def load_apps(path: Path) -> tuple[AppEntry, ...]:
    """Read and validate the apps file: a JSON list of apps (or ``{"apps": [...]}``) in the local server's
    format, minus ``secret``. Validation is the handlers' own ``AppConfig``, so what synthesizes also loads."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read apps file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"apps file {path} is not valid JSON: {exc}") from exc
    items = raw.get("apps") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(f"apps file {path} must hold a non-empty list of apps (or {{'apps': [...]}})")
    entries: list[AppEntry] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"apps file {path}: app #{index} is not an object")
        if "secret" in item:
            raise ConfigError(
                f"apps file {path}: app #{index} has a literal 'secret'; it would be stored in the CloudFormation "
                "template. Leave it out (a secret is generated) or put it in Secrets Manager and give 'secret_arn'."
            )
        parameter = item.get("secret_parameter")
        if parameter is not None and (not isinstance(parameter, str) or not PARAMETER_NAME.fullmatch(parameter)):
            raise ConfigError(f"apps file {path}: app #{index}'s 'secret_parameter' is not an SSM parameter name")
        if parameter is not None and item.get("secret_arn"):
            raise ConfigError(f"apps file {path}: app #{index} has both 'secret_arn' and 'secret_parameter'")
        settings = {k: v for k, v in item.items() if k not in SECRET_KEYS}
        try:
            AppConfig.model_validate({**settings, "secret": "placeholder"})
        except ValidationError as exc:
            raise ConfigError(f"apps file {path}: app #{index} is invalid:\n{exc}") from None
        entries.append(AppEntry(settings, item.get("secret_arn"), item.get("secret_json_key"), parameter))
    if len({entry.secret_parameter is None for entry in entries}) > 1:
        raise ConfigError(
            f"apps file {path}: either every app's secret is an SSM parameter ('secret_parameter') or none is: "
            "the functions read all app secrets from one place"
        )
    for attr in ("app_id", "key"):
        values = [getattr(entry, attr) for entry in entries]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigError(f"apps file {path}: duplicate app {attr.removeprefix('app_')}: {', '.join(duplicates)}")
    return tuple(entries)


def from_context(get: Any) -> DeployConfig:
    """Build the config from a ``node.try_get_context``-like callable (missing keys give ``None``)."""

    def value(name: str, default: Any) -> Any:
        found = get(name)
        return default if found is None else found

    defaults = DeployConfig()
    if get("execute_api_endpoint") is not None:
        raise ConfigError(
            "context 'execute_api_endpoint' was removed: an execute-api VPC endpoint cannot reach the public "
            "WebSocket API's @connections, so the Valkey variant sends management API calls through its NAT "
            "gateway (docs/deploy.md, 'The Valkey variant')"
        )
    apps_file = Path(value("apps_file", str(DEFAULT_APPS_FILE)))
    if not apps_file.is_absolute():
        apps_file = Path.cwd() / apps_file
    alarm_email = value("alarm_email", None)
    domain_name, certificate_arn = value("domain_name", None), value("certificate_arn", None)
    if bool(domain_name) != bool(certificate_arn):
        raise ConfigError("context 'domain_name' and 'certificate_arn' go together (an ACM certificate in us-east-1)")
    retention_days = _int(value("log_retention_days", defaults.log_retention_days), "log_retention_days", minimum=1)
    if retention_days not in LOG_RETENTION_DAYS:
        raise ConfigError(f"context 'log_retention_days' must be one of {LOG_RETENTION_DAYS}, not {retention_days}")
    stage_name = str(value("stage_name", defaults.stage_name))
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", stage_name):
        raise ConfigError(f"context 'stage_name' must be letters, digits or _, not {stage_name!r}")
    return DeployConfig(
        store=_choice(value("store", defaults.store), "store", ("dynamodb", "valkey")),  # type: ignore[arg-type]
        apps=load_apps(apps_file),
        ping_route=_choice(value("ping_route", defaults.ping_route), "ping_route", ("mock", "lambda")),  # type: ignore[arg-type]
        stage_name=stage_name,
        log_retention_days=retention_days,
        fanout_reserved_concurrency=_int(
            value("fanout_reserved_concurrency", defaults.fanout_reserved_concurrency), "fanout_reserved_concurrency"
        ),
        webhooks_max_concurrency=_int(
            value("webhooks_max_concurrency", defaults.webhooks_max_concurrency), "webhooks_max_concurrency", minimum=2
        ),
        alarm_email=str(alarm_email) if alarm_email else None,
        monitoring=_flag(value("monitoring", defaults.monitoring), "monitoring"),
        budget_usd=_budget(value("budget_usd", None), alarm_email),
        metrics=_flag(value("metrics", defaults.metrics), "metrics"),
        log_level=_choice(value("log_level", defaults.log_level), "log_level", ("DEBUG", "INFO", "WARNING", "ERROR")),
        ordered_frames=_ordered_frames(value("ordered_frames", defaults.ordered_frames)),
        access_logs=_flag(value("access_logs", defaults.access_logs), "access_logs"),
        apigw_logging_role=_flag(value("apigw_logging_role", defaults.apigw_logging_role), "apigw_logging_role"),
        stage_throttle_rate=_int(
            value("stage_throttle_rate", defaults.stage_throttle_rate), "stage_throttle_rate", minimum=1
        ),
        stage_throttle_burst=_int(
            value("stage_throttle_burst", defaults.stage_throttle_burst), "stage_throttle_burst", minimum=1
        ),
        domain_name=str(domain_name) if domain_name else None,
        certificate_arn=str(certificate_arn) if certificate_arn else None,
        apps_revision=str(value("apps_revision", defaults.apps_revision)),
    )
