"""Lambda runtimes' deprecation dates as AWS publishes them, with where and when they were read.

The deploy-readiness test (tests/cdk/test_deploy_readiness.py) checks every function of the synthesized
template against these dates; docs/runtime.md shows the same rows as a table, which a test keeps equal to
``markdown_table()`` (``python -m cdk.runtimes`` prints it). AWS's dates are forecasts and move: re-read
the pages when ``READ`` is more than six months old (the readiness test fails then), and add a row when the
stack (or a construct the CDK adds to it) uses a runtime that is not here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

READ = datetime.date(2026, 12, 2)
STALE_AFTER = datetime.timedelta(days=183)


@dataclass(frozen=True)
class Source:
    """An AWS page with a table of runtimes and their dates."""

    title: str
    url: str


@dataclass(frozen=True)
class RuntimeDates:
    """One row of AWS's table: after ``deprecation`` a runtime gets no security patches, after
    ``block_create`` no new function can use it, after ``block_update`` no existing one can be updated."""

    identifier: str
    operating_system: str
    deprecation: datetime.date
    block_create: datetime.date
    block_update: datetime.date
    source: Source


PYTHON = Source(
    'AWS Lambda developer guide, "Building Lambda functions with Python", table "Lambda supports the '
    'following Python runtimes"',
    "https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html",
)
NODEJS = Source(
    'AWS Lambda developer guide, "Building Lambda functions with Node.js", table "Lambda supports the '
    'following Node.js runtimes"',
    "https://docs.aws.amazon.com/lambda/latest/dg/lambda-nodejs.html",
)


def _row(identifier: str, system: str, deprecation: str, create: str, update: str, source: Source) -> RuntimeDates:
    iso = datetime.date.fromisoformat
    return RuntimeDates(identifier, system, iso(deprecation), iso(create), iso(update), source)


AL2023, AL2 = "Amazon Linux 2023", "Amazon Linux 2"
RUNTIMES: dict[str, RuntimeDates] = {
    row.identifier: row
    for row in (
        _row("python3.14", AL2023, "2029-06-30", "2029-07-31", "2029-08-31", PYTHON),
        _row("python3.13", AL2023, "2029-06-30", "2029-07-31", "2029-08-31", PYTHON),
        _row("python3.12", AL2023, "2028-10-31", "2028-11-30", "2029-01-10", PYTHON),
        _row("python3.11", AL2, "2027-06-30", "2027-07-31", "2027-08-31", PYTHON),
        _row("python3.10", AL2, "2026-10-31", "2026-11-30", "2027-01-15", PYTHON),
        # Not a sockless function's: the CDK's custom resource that closes the VPC's default security group
        # (the Valkey variant) runs on it.
        _row("nodejs24.x", AL2023, "2028-04-30", "2028-06-01", "2028-07-01", NODEJS),
    )
}


def deprecated_within(identifier: str, window: datetime.timedelta, today: datetime.date) -> bool:
    """Whether ``identifier`` is deprecated before ``today + window``. Raises ``KeyError`` for a runtime
    without a row (its dates are unknown, so nothing can be said)."""
    return RUNTIMES[identifier].deprecation <= today + window


def markdown_table() -> str:
    """The rows as docs/runtime.md shows them."""
    lines = [
        "| identifier | operating system | deprecation | block function create | block function update |",
        "|---|---|---|---|---|",
    ]
    for row in RUNTIMES.values():
        dates = (row.deprecation, row.block_create, row.block_update)
        lines.append(f"| {row.identifier} | {row.operating_system} | " + " | ".join(map(str, dates)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
