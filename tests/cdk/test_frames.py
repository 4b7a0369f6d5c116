"""The ordered frames queue (cdk/components/frames.py): ``$default`` -> SQS FIFO -> the message function; and the
ordered frames stream (cdk/components/frames_stream.py): ``$default`` -> DynamoDB PutItem -> its stream -> the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk.components.frames import MAX_RECEIVES, REQUEST_TEMPLATE
from cdk.components.frames_stream import (
    BATCH_SIZE,
    MAX_RETRIES,
    PARALLELIZATION_FACTOR,
    TTL_ATTRIBUTE,
    request_template,
)
from tests.cdk.conftest import Synth, render, synthesize
from tests.cdk.test_websocket import _route_target

MESSAGE_HANDLER = "functions.message.handler.handler"


@pytest.fixture(scope="module", params=["dynamodb", "valkey"])
def ordered(request: pytest.FixtureRequest) -> Synth:
    return synthesize({"store": request.param, "ordered_frames": "true"})


@pytest.fixture(scope="module")
def unordered() -> Synth:
    return synthesize({"store": "dynamodb", "ordered_frames": "false"})


def _frames_queue(synth: Synth) -> tuple[str, dict[str, Any]]:
    return synth.one("AWS::SQS::Queue", FifoQueue=True, FifoThroughputLimit="perMessageGroupId")


def test_default_route_sends_each_frame_to_the_fifo_queue_grouped_by_connection(ordered: Synth) -> None:
    queue_id, _ = _frames_queue(ordered)
    _, integration = _route_target(ordered, "$default")
    properties = integration["Properties"]
    assert properties["IntegrationType"] == "AWS"
    assert properties["IntegrationMethod"] == "POST"
    uri = render(properties["IntegrationUri"], {queue_id: "QUEUE"})
    # SQS's query API through API Gateway's AWS service URI: POST /{account}/{queue name}.
    assert uri == "arn:<AWS::Partition>:apigateway:<AWS::Region>:sqs:path/<AWS::AccountId>/QUEUE"
    assert properties["RequestParameters"] == {
        "integration.request.header.Content-Type": "'application/x-www-form-urlencoded'"
    }
    assert properties["RequestTemplates"] == {"$default": REQUEST_TEMPLATE}
    assert properties["PassthroughBehavior"] == "NEVER"
    template = dict(part.split("=", 1) for part in REQUEST_TEMPLATE.split("&"))
    assert template["Action"] == "SendMessage"
    assert template["MessageGroupId"] == "$util.urlEncode($context.connectionId)"
    # Unique per frame: the same client event sent twice is two messages, never deduplicated.
    assert template["MessageDeduplicationId"] == "$util.urlEncode($context.messageId)"
    assert template["MessageBody"] == "$util.urlEncode($input.body)"


def test_the_integration_role_may_only_send_to_the_frames_queue(ordered: Synth) -> None:
    queue_id, _ = _frames_queue(ordered)
    _, integration = _route_target(ordered, "$default")
    role_id = integration["Properties"]["CredentialsArn"]["Fn::GetAtt"][0]
    role = ordered.resources[role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    statements = [
        statement
        for policy in ordered.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert [s["Resource"] for s in statements] == [{"Fn::GetAtt": [queue_id, "Arn"]}]
    assert "sqs:SendMessage" in statements[0]["Action"]
    assert not any("Receive" in action or "Delete" in action for action in statements[0]["Action"])


def test_the_message_function_consumes_the_queue_in_batches_with_partial_failures(ordered: Synth) -> None:
    queue_id, queue = _frames_queue(ordered)
    function_id, function = ordered.function(MESSAGE_HANDLER)
    ordered.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
            "FunctionName": {"Ref": function_id},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    properties = queue["Properties"]
    assert properties["DeduplicationScope"] == "messageGroup"
    assert properties["VisibilityTimeout"] == 6 * function["Properties"]["Timeout"]
    assert properties["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVES
    dead_letters = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert ordered.resources[dead_letters]["Properties"]["FifoQueue"] is True


def test_without_ordered_frames_default_invokes_the_function_directly(unordered: Synth) -> None:
    _, integration = _route_target(unordered, "$default")
    function_id, _ = unordered.function(MESSAGE_HANDLER)
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert {"Fn::GetAtt": [function_id, "Arn"]} in integration["Properties"]["IntegrationUri"]["Fn::Join"][1]
    assert not [q for q in unordered.of_type("AWS::SQS::Queue").values() if q["Properties"].get("FifoQueue")]


# -- -c ordered_frames=stream: $default -> DynamoDB PutItem -> the table's stream (cdk/components/frames_stream.py)


@pytest.fixture(scope="module")
def streamed() -> Synth:
    return synthesize({"store": "dynamodb", "ordered_frames": "stream"})


def _frames_table(synth: Synth) -> tuple[str, dict[str, Any]]:
    return synth.one("AWS::DynamoDB::GlobalTable", StreamSpecification={"StreamViewType": "NEW_IMAGE"})


def test_stream_default_route_puts_each_frame_as_its_connections_one_item(streamed: Synth) -> None:
    table_id, table = _frames_table(streamed)
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    _, integration = _route_target(streamed, "$default")
    properties = integration["Properties"]
    assert properties["IntegrationType"] == "AWS"
    assert (
        render(properties["IntegrationUri"], {})
        == "arn:<AWS::Partition>:apigateway:<AWS::Region>:dynamodb:action/PutItem"
    )
    template = render(properties["RequestTemplates"]["$default"], {table_id: "TABLE"})
    assert template == request_template("TABLE")
    body = json.loads(template.split("\n", 1)[1])
    assert body["TableName"] == "TABLE"
    assert body["Item"]["connectionId"] == {"S": "$context.connectionId"}
    # Unique per frame: a put that changed nothing would write no stream record.
    assert body["Item"]["messageId"] == {"S": "$context.messageId"}
    assert body["Item"]["frame"] == {"B": "$util.base64Encode($input.body)"}
    assert body["Item"]["requestTimeEpoch"] == {"N": "$context.requestTimeEpoch"}
    assert not [q for q in streamed.of_type("AWS::SQS::Queue").values() if q["Properties"].get("FifoQueue")]


def test_stream_integration_role_may_only_put_items_into_the_frames_table(streamed: Synth) -> None:
    table_id, _ = _frames_table(streamed)
    _, integration = _route_target(streamed, "$default")
    role_id = integration["Properties"]["CredentialsArn"]["Fn::GetAtt"][0]
    role = streamed.resources[role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    statements = [
        statement
        for policy in streamed.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements == [
        {"Action": "dynamodb:PutItem", "Effect": "Allow", "Resource": {"Fn::GetAtt": [table_id, "Arn"]}}
    ]


def test_the_message_function_reads_the_stream_in_order_with_bounded_retries(streamed: Synth) -> None:
    table_id, _ = _frames_table(streamed)
    function_id, _ = streamed.function(MESSAGE_HANDLER)
    _, mapping = streamed.one("AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": [table_id, "StreamArn"]})
    properties = mapping["Properties"]
    failures = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert properties == {
        "BatchSize": BATCH_SIZE,
        "BisectBatchOnFunctionError": True,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [failures, "Arn"]}}},
        "EventSourceArn": {"Fn::GetAtt": [table_id, "StreamArn"]},
        "FilterCriteria": {"Filters": [{"Pattern": '{"eventName":["INSERT","MODIFY"]}'}]},
        "FunctionName": {"Ref": function_id},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRecordAgeInSeconds": 60,
        "MaximumRetryAttempts": MAX_RETRIES,
        "ParallelizationFactor": PARALLELIZATION_FACTOR,
        "StartingPosition": "LATEST",
    }
    assert streamed.resources[failures]["Type"] == "AWS::SQS::Queue"
    # The function reads the stream (Lambda polls it with the execution role) and may send to its destination.
    statements = streamed.statements(MESSAGE_HANDLER)
    [read] = [s for s in statements if s["Resource"] == {"Fn::GetAtt": [table_id, "StreamArn"]}]
    assert "dynamodb:GetRecords" in read["Action"]
    destination = {"Fn::GetAtt": [failures, "Arn"]}
    assert any(
        "sqs:SendMessage" in s["Action"]
        and destination in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        for s in statements
    )
    # And nothing else of the frames table: the function never reads or writes its items.
    assert not [s for s in statements if s["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}]
