"""moto in-process (``mock_aws``) for the AWS drivers, and driver factories that start from an empty account.

moto applies a request in several non-atomic steps (a DynamoDB transaction deep-copies whole tables and
restores them on failure), so two threads calling it at once can corrupt its state, which real DynamoDB
never does: every DynamoDB request is atomic there. :class:`AtomicRequests` gives moto that property with
one lock per client, while the drivers' logical operations (several requests each) still interleave
freely, which is what the concurrency tests are about.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

from shared.limits.dynamodb import DynamoDBRateLimiter
from shared.store.dynamodb import DynamoDBChannelStore, create_table
from shared.webhooks.sqs import SqsWebhookQueue

REGION = "us-east-1"


# Decides, per request, whether AWS refuses it instead of applying it: (operation, kwargs) -> error or None.
Fault = Callable[[str, dict[str, Any]], Exception | None]


class AtomicRequests:
    """A boto3 client proxy that lets one request at a time through (see the module docstring).

    ``calls`` records every operation; ``fault`` (settable) makes AWS refuse chosen requests, as DynamoDB
    does with a transaction conflict or an outage, without applying them.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.calls: list[str] = []
        self.fault: Fault | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("get_waiter") or name == "exceptions":
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append(name)
                error = self.fault(name, kwargs) if self.fault is not None else None
                if error is not None:
                    raise error
                return attr(*args, **kwargs)

        return locked


def aws_error(code: str, operation: str, status: int = 400, **extra: Any) -> Exception:
    """The ``ClientError`` botocore raises for an AWS error answer."""
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}, **extra}
    error: Exception = ClientError(response, operation)
    return error


def transaction_conflict(operation: str, kwargs: dict[str, Any]) -> Exception:
    """DynamoDB's answer when an item of the transaction is locked by another transaction in flight."""
    reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
    return aws_error(
        "TransactionCanceledException", operation, CancellationReasons=reasons * len(kwargs["TransactItems"])
    )


@contextlib.contextmanager
def aws() -> Iterator[None]:
    """An empty moto account for the duration of the block (fake credentials, no network)."""
    with mock_aws():
        yield


def client(service: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(service)


def dynamodb_table() -> tuple[AtomicRequests, str]:
    """A fresh table created as CDK creates it; call inside :func:`aws`."""
    raw = client("dynamodb")
    name = f"sockless-test-{uuid.uuid4().hex[:8]}"
    create_table(raw, name)
    return AtomicRequests(raw), name


@contextlib.asynccontextmanager
async def dynamodb_store(**options: Any) -> AsyncIterator[DynamoDBChannelStore]:
    with aws():
        dynamodb, table = dynamodb_table()
        store = DynamoDBChannelStore(table, client=dynamodb, **options)
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def dynamodb_limiter() -> AsyncIterator[DynamoDBRateLimiter]:
    with aws():
        dynamodb, table = dynamodb_table()
        limiter = DynamoDBRateLimiter(table, client=dynamodb)
        try:
            yield limiter
        finally:
            await limiter.close()


@contextlib.asynccontextmanager
async def sqs_queue(visibility_timeout: float = 1.0) -> AsyncIterator[SqsWebhookQueue]:
    """A standard queue; no request lock, so a long poll does not hold pushes back (moto's SQS is thread-safe
    enough for that: it waits on a condition)."""
    with aws():
        sqs = client("sqs")
        url = sqs.create_queue(
            QueueName=f"sockless-test-{uuid.uuid4().hex[:8]}",
            Attributes={"VisibilityTimeout": str(max(int(visibility_timeout), 1))},
        )["QueueUrl"]
        queue = SqsWebhookQueue(url, client=sqs)
        try:
            yield queue
        finally:
            await queue.close()
