"""The ordered frames queue: ``$default`` -> SQS FIFO (one message group per connection) -> the message function.

API Gateway invokes a route's integration for each frame without waiting for the previous one, so two frames
of one connection sent back to back could run concurrently or in the other order (docs/aws.md "Frames of one
connection in order"). Here ``$default`` is an AWS integration that sends each frame to a FIFO queue with the
connectionId as its ``MessageGroupId``; the message function reads the queue through an event source
mapping, which hands out one group's messages in order and none of a group while a batch of it is in flight
(Lambda developer guide, "Configuring scaling behavior for SQS event source mappings"; SQS developer guide,
"Using the message group ID with Amazon SQS FIFO Queues").

The request template (API Gateway developer guide, "WebSocket API mapping template reference"):
- ``MessageGroupId`` = ``$context.connectionId``; ``MessageDeduplicationId`` = ``$context.messageId`` (unique
  per message): two identical frames (the same client event twice) are two messages, never deduplicated;
- the frame itself is the message body, untouched; the connectionId and ``requestTimeEpoch`` travel as
  message attributes (``functions/message/frames.py`` reads them);
- every value is URL-encoded: connection ids are base64 and may hold ``+`` and ``/``.

High-throughput FIFO (deduplication and throughput per message group) because groups are connections: the
queue's limit then applies per connection, not to the whole app (SQS developer guide, "High throughput for
FIFO queues").
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from cdk.components.queues import consumed_queue

# A frame that failed this many times goes to the dead-letter queue and its connection's next frames run:
# each attempt holds them back for the visibility timeout.
MAX_RECEIVES = 3
BATCH_SIZE = 10  # the FIFO maximum (Lambda developer guide, "Lambda parameters for Amazon SQS event source mappings")
# A frame not handled within this is of no use to a client any more (pusher-js gives up on a subscription
# long before); the minimum SQS allows is 60 s.
RETENTION = cdk.Duration.minutes(15)
FRAME_ATTRIBUTES = ("connectionId", "requestTimeEpoch")
REQUEST_TEMPLATE = "&".join(
    (
        "Action=SendMessage",
        "MessageGroupId=$util.urlEncode($context.connectionId)",
        "MessageDeduplicationId=$util.urlEncode($context.messageId)",
        "MessageAttribute.1.Name=connectionId",
        "MessageAttribute.1.Value.DataType=String",
        "MessageAttribute.1.Value.StringValue=$util.urlEncode($context.connectionId)",
        "MessageAttribute.2.Name=requestTimeEpoch",
        "MessageAttribute.2.Value.DataType=Number",
        "MessageAttribute.2.Value.StringValue=$context.requestTimeEpoch",
        "MessageBody=$util.urlEncode($input.body)",
    )
)


class FramesQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, consumer_timeout: cdk.Duration) -> None:
        super().__init__(scope, construct_id)
        self.queue, self.dead_letters = consumed_queue(
            self,
            consumer_timeout=consumer_timeout,
            retention=RETENTION,
            max_receives=MAX_RECEIVES,
            fifo=True,
            high_throughput=True,  # limits per connection, not per app (module docstring)
        )
        # The integration's credentials: API Gateway may send to this queue and nothing else.
        self.role = iam.Role(
            self,
            "IntegrationRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="sockless: $default frames into the ordered frames queue",
        )
        self.queue.grant_send_messages(self.role)

    def integration(self) -> apigwv2.WebSocketRouteIntegration:
        """``$default``'s integration: ``SendMessage`` through SQS's query API, the request template above."""
        stack = cdk.Stack.of(self)
        return integrations.WebSocketAwsIntegration(
            "Frames",
            integration_uri=f"arn:{stack.partition}:apigateway:{stack.region}:sqs:path/{stack.account}/"
            f"{self.queue.queue_name}",
            integration_method="POST",
            credentials_role=self.role,
            request_parameters={"integration.request.header.Content-Type": "'application/x-www-form-urlencoded'"},
            request_templates={"$default": REQUEST_TEMPLATE},
            template_selection_expression="\\$default",
            passthrough_behavior=apigwv2.PassthroughBehavior.NEVER,
        )

    def attach_consumer(self, consumer: lambda_.Function) -> None:
        """The message function reads the queue: batches of up to 10, failed frames (and their
        connection's later ones) reported back (``ReportBatchItemFailures``)."""
        consumer.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True)
        )
