"""List prices the cost report uses: us-east-1, on-demand, in US dollars, read on the date below.

One table, one source per price. Free tiers are listed apart (:data:`FREE_TIERS`) and never subtracted
from a figure: the report prints what the month costs an account that has used its free tier up, or
never had one (AWS's 12-month tiers end; the always-free ones are shared by every workload of the
account). docs/cost.md prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_READ_ON = "2026-12-02"
REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: float  # per ``unit``
    unit: str
    source: str
    note: str = ""


APIGW = "https://aws.amazon.com/api-gateway/pricing/"
LAMBDA = "https://aws.amazon.com/lambda/pricing/"
LAMBDA_INIT = "https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase"
DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
SQS = "https://aws.amazon.com/sqs/pricing/"
CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
SSM = "https://aws.amazon.com/systems-manager/pricing/"
CLOUDFRONT = "https://aws.amazon.com/cloudfront/pricing"
EVENTBRIDGE = "https://aws.amazon.com/eventbridge/pricing/"
BUDGETS = "https://aws.amazon.com/aws-cost-management/aws-budgets/pricing/"

PRICES: dict[str, Price] = {
    # API Gateway. WebSocket messages are metered in 32 KB increments, both directions (a 33 KB message
    # is two); the first billion a month at $1.00/M.
    "ws_message": Price(1.00 / 1e6, "message (32 KB)", APIGW, "sent or received; first 1 B/month tier"),
    "ws_connection_minute": Price(0.25 / 1e6, "connection-minute", APIGW),
    # GetConnection / DeleteConnection on @connections are not messages on the pricing page; counted at 0.
    "ws_management_call": Price(0.0, "@connections GET/DELETE", APIGW, "not a listed dimension"),
    "http_request": Price(1.00 / 1e6, "request (512 KB)", APIGW, "HTTP API, first 300 M/month tier"),
    # Lambda (the stack runs arm64: cdk/components/functions.py ARCHITECTURE).
    "lambda_request": Price(0.20 / 1e6, "invocation", LAMBDA),
    "lambda_gb_s_arm64": Price(0.0000133334, "GB-second", LAMBDA, "arm64, first 7.5 B GB-s/month tier"),
    "lambda_gb_s_x86": Price(0.0000166667, "GB-second", LAMBDA, "x86_64, for comparison"),
    # Since 2025-08-01 the INIT phase of ZIP functions on managed runtimes is billed like the handler.
    "lambda_init_gb_s": Price(0.0000133334, "GB-second of INIT", LAMBDA_INIT, "cold starts, arm64 rate"),
    # DynamoDB on demand: reads in 4 KB units (strongly consistent 1, eventually consistent 0.5,
    # transactional 2), writes in 1 KB units (transactional 2). TTL deletes consume no write units.
    "dynamodb_wru": Price(0.625 / 1e6, "write request unit", DYNAMODB),
    "dynamodb_rru": Price(0.125 / 1e6, "read request unit", DYNAMODB),
    "dynamodb_storage": Price(0.25, "GB-month", DYNAMODB, "standard table class"),
    "dynamodb_pitr": Price(0.20, "GB-month", DYNAMODB, "continuous backups (PITR), by table size"),
    # SQS: every API action is a request; each 64 KB chunk of a payload is one request.
    "sqs_standard_request": Price(0.40 / 1e6, "request (64 KB)", SQS, "incl. receives and empty receives"),
    "sqs_fifo_request": Price(0.50 / 1e6, "request (64 KB)", SQS, "FIFO queues"),
    # CloudWatch.
    "logs_ingest": Price(0.50, "GB ingested", CLOUDWATCH, "standard log class; Lambda logs tiered from $0.50"),
    "logs_storage": Price(0.03, "GB-month stored", CLOUDWATCH, "compressed size"),
    "custom_metric": Price(0.30, "metric-month", CLOUDWATCH, "first 10,000 metrics; EMF too"),
    "alarm": Price(0.10, "alarm-month", CLOUDWATCH, "standard resolution, one metric"),
    "dashboard": Price(3.00, "dashboard-month", CLOUDWATCH),
    # Secrets.
    "secret": Price(0.40, "secret-month", SECRETS),
    "secret_api": Price(0.05 / 1e4, "API call", SECRETS),
    "ssm_standard_parameter": Price(0.0, "parameter-month", SSM, "standard tier SecureString: no charge"),
    "ssm_api_standard": Price(0.0, "API call", SSM, "standard throughput: no charge"),
    # CloudFront (United States, Mexico and Canada).
    "cloudfront_https_request": Price(0.0100 / 1e4, "HTTPS request", CLOUDFRONT, "a WebSocket upgrade is one"),
    "cloudfront_data_out": Price(0.085, "GB out", CLOUDFRONT, "first 10 TB/month"),
    # EventBridge: a scheduled rule's invocations carry no charge; EventBridge Scheduler bills per invocation.
    "eventbridge_rule": Price(0.0, "scheduled invocation", EVENTBRIDGE, "rules on the default bus: no charge"),
    "eventbridge_scheduler": Price(1.00 / 1e6, "invocation", EVENTBRIDGE, "EventBridge Scheduler"),
    "budget": Price(0.0, "budget-month", BUDGETS, "first two budgets of an account: no charge"),
}

# Shown apart, never subtracted (see the module docstring).
FREE_TIERS: dict[str, str] = {
    "API Gateway": "1 M WebSocket messages, 750,000 connection-minutes, 1 M HTTP API calls a month, first 12 months",
    "Lambda": "1 M requests and 400,000 GB-s a month (always)",
    "DynamoDB": "25 GB of storage (always)",
    "SQS": "1 M requests a month (always)",
    "CloudWatch": "5 GB of logs, 10 custom metrics, 10 alarms, 3 dashboards a month (always)",
    "CloudFront": "1 TB out and 10 M requests a month (always)",
    "EventBridge Scheduler": "14 M invocations a month (always)",
    "Secrets Manager": "30-day trial per secret",
}

# Pusher Channels plans (the figures): (name, $/month, concurrent connections, messages/day).
# Pusher counts published and delivered messages, not pings.
PUSHER_PLANS: tuple[tuple[str, float, int, int], ...] = (
    ("Sandbox", 0, 100, 200_000),
    ("Startup", 49, 500, 1_000_000),
    ("Pro", 99, 2_000, 4_000_000),
    ("Business", 299, 5_000, 10_000_000),
    ("Premium", 499, 10_000, 20_000_000),
)


def usd(name: str, units: float) -> float:
    return PRICES[name].usd * units
