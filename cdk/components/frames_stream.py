"""The ordered frames stream: ``$default`` -> DynamoDB ``PutItem`` -> the table's stream -> the message function.

``-c ordered_frames=stream``: the same order as the FIFO queue (``cdk/components/frames.py``), without its idle
cost. An SQS event source mapping long-polls its queue with several pollers whether or not anything arrives
(docs/cost.md "The event source mappings' idle polls"); a DynamoDB stream costs nothing while idle and Lambda's
``GetRecords`` on it are free (DynamoDB developer guide, "Evaluate your DynamoDB streams usage").

``$default`` is an AWS integration calling DynamoDB's ``PutItem`` on a small table holding ONE item per
connection (key ``connectionId``), overwritten by each frame. DynamoDB Streams writes each item's records in
the order of its modifications (DynamoDB developer guide, "Change data capture for DynamoDB Streams"), and
Lambda keeps the order of one partition key's records even when it reads a shard with several batches at once
(``ParallelizationFactor``; Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB", "Concurrent reads
of a shard in DynamoDB Streams"). So a connection's frames reach the function in order, and different
connections of one shard still run in parallel.

Each item carries the frame (base64, a ``B`` attribute: the body is any text, and JSON-escaping it in a mapping
template is not safe: ``$util.escapeJavaScript`` escapes ``'`` as ``\\'``, which JSON rejects), API Gateway's
``requestTimeEpoch`` and ``messageId`` (unique per frame: DynamoDB writes no stream record for a put that
changes nothing, and two identical frames must be two records), and ``expires`` (TTL, a day after the frame).
The stream's records are read with ``StartingPosition`` LATEST, a filter drops TTL's ``REMOVE`` records
(filtered records are not billed), and a frame that keeps failing goes to the ``Failures`` queue after a few
retries or a minute, so it cannot hold its shard back for long.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from cdk.components.queues import failures_queue

KEY = "connectionId"
TTL_ATTRIBUTE = "expires"
TTL_SECONDS = 86_400  # a connection lives at most 2 h (API Gateway); the item is of no use after its last frame
BATCH_SIZE = 10
# Lambda reads one shard with up to this many batches at once, each partition key's records in order: the
# connections of a shard do not wait for each other (the maximum).
PARALLELIZATION_FACTOR = 10
# A failed batch is retried this often (split in two each time, BisectBatchOnFunctionError), then its records go
# to the Failures queue and the shard moves on: a poison frame holds its shard back for seconds, not a day.
MAX_RETRIES = 2
# A frame older than this is of no use to a client (pusher-js gives up on a subscription long before); the
# smallest value Lambda allows.
MAX_RECORD_AGE = cdk.Duration.seconds(60)


def request_template(table_name: str) -> str:
    """``PutItem``'s request body (API Gateway developer guide, "WebSocket API mapping template reference"):
    the connection's one item, replaced by this frame."""
    item = {
        KEY: {"S": "$context.connectionId"},
        "frame": {"B": "$util.base64Encode($input.body)"},
        "requestTimeEpoch": {"N": "$context.requestTimeEpoch"},
        "messageId": {"S": "$context.messageId"},
        TTL_ATTRIBUTE: {"N": "$expires"},
    }
    body = json.dumps({"TableName": table_name, "Item": item}, separators=(",", ":"))
    return f"#set($expires = $context.requestTimeEpoch / 1000 + {TTL_SECONDS})\n{body}"


class FramesStream(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=KEY, type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            dynamo_stream=dynamodb.StreamViewType.NEW_IMAGE,
            # PITR is billed by the table's size: one small item per connection.
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Only each connection's last frame, kept a day at most (TTL): nothing to keep on a teardown.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # Lambda's on-failure destination: what is left of a batch it gave up on (the shard and sequence
        # numbers, not the frames: those are in the stream for 24 hours).
        self.failures = failures_queue(self, "Failures")
        # The integration's credentials: API Gateway may put items into this table and do nothing else.
        self.role = iam.Role(
            self,
            "IntegrationRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="sockless: $default frames into the ordered frames table",
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[self.table.table_arn]))

    def integration(self) -> apigwv2.WebSocketRouteIntegration:
        """``$default``'s integration: DynamoDB ``PutItem`` with the request template above."""
        stack = cdk.Stack.of(self)
        return integrations.WebSocketAwsIntegration(
            "FramesStream",
            integration_uri=f"arn:{stack.partition}:apigateway:{stack.region}:dynamodb:action/PutItem",
            integration_method="POST",
            credentials_role=self.role,
            request_templates={"$default": request_template(self.table.table_name)},
            template_selection_expression="\\$default",
            passthrough_behavior=apigwv2.PassthroughBehavior.NEVER,
        )

    def attach_consumer(self, consumer: lambda_.Function) -> None:
        """The message function reads the stream: batches of up to 10, failed frames reported back by
        sequence number (``ReportBatchItemFailures``), ``REMOVE`` records (TTL) filtered out."""
        consumer.add_event_source(
            event_sources.DynamoEventSource(
                self.table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=BATCH_SIZE,
                parallelization_factor=PARALLELIZATION_FACTOR,
                retry_attempts=MAX_RETRIES,
                max_record_age=MAX_RECORD_AGE,
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                on_failure=event_sources.SqsDlq(self.failures),
                filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.or_("INSERT", "MODIFY")})],
            )
        )
