"""The stack's SQS queues, made one way: SQS-managed encryption, TLS only, failures kept 14 days.

Functions, not a construct: each queue keeps its construct path (``FramesQueue/Queue``,
``WebhookQueue/DeadLetters``, ``AsyncFailures``), hence its logical ID, so a deploy never replaces it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# What no code will take any more (a dead letter, an event Lambda gave up on) waits this long for a human:
# the longest SQS keeps a message.
FAILURES_RETENTION = cdk.Duration.days(14)
# A queue a Lambda function reads has a visibility timeout of at least six times the function's timeout, so
# Lambda can retry a batch whose function was throttled before it is handed out again
# (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
VISIBILITY_PER_TIMEOUT = 6


def _queue(
    scope: Construct,
    construct_id: str,
    *,
    retention: cdk.Duration,
    fifo: bool,
    high_throughput: bool = False,
    visibility_timeout: cdk.Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    return sqs.Queue(
        scope,
        construct_id,
        fifo=fifo or None,
        deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP if high_throughput else None,
        fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID if high_throughput else None,
        visibility_timeout=visibility_timeout,
        retention_period=retention,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        dead_letter_queue=dead_letter_queue,
    )


def failures_queue(scope: Construct, construct_id: str, *, fifo: bool = False) -> sqs.Queue:
    """A queue of failures for a human to look at: a dead-letter queue, or Lambda's on-failure destination."""
    return _queue(scope, construct_id, retention=FAILURES_RETENTION, fifo=fifo)


def consumed_queue(
    scope: Construct,
    *,
    consumer_timeout: cdk.Duration,
    retention: cdk.Duration,
    max_receives: int,
    fifo: bool = False,
    high_throughput: bool = False,
) -> tuple[sqs.Queue, sqs.Queue]:
    """``Queue``, read by a Lambda function that runs at most ``consumer_timeout``, and its ``DeadLetters``,
    where a message received ``max_receives`` times goes. ``high_throughput``: FIFO deduplication and
    throughput limit per message group rather than per queue."""
    dead_letters = failures_queue(scope, "DeadLetters", fifo=fifo)
    queue = _queue(
        scope,
        "Queue",
        retention=retention,
        fifo=fifo,
        high_throughput=high_throughput,
        visibility_timeout=cdk.Duration.seconds(consumer_timeout.to_seconds() * VISIBILITY_PER_TIMEOUT),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=max_receives),
    )
    return queue, dead_letters
