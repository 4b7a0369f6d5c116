"""The ordered frames stream's ``$default`` integration (``-c ordered_frames=stream``), as the synthesized template
describes it, rendered and sent by ``local_server/emulator/dynamodb_integration.py``: the PutItem request API
Gateway would make for any frame, and IAM's answer when the integration role may not make it.

The request template writes the frame base64-encoded into a ``B`` attribute (cdk/components/frames_stream.py):
whatever the frame holds, the item's bytes are the frame's. DynamoDB is the emulator's moto, IAM enforced.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cdk.components.frames_stream import TTL_SECONDS
from local_server.emulator import aws, synth
from local_server.emulator.dynamodb_integration import DynamoDBIntegration, _boto3_arguments, render
from local_server.emulator.iam import Iam, Principal
from local_server.emulator.template import Deployment, Endpoints, Integration, load

REGION = "us-east-1"
ACCOUNT = "123456789012"
# The lean stack's context: the same integration, and the template `python -m cost --lean --measure` caches.
CONTEXT = {"log_level": "WARNING", "metrics": "false", "ordered_frames": "stream"}
FRAMES = [
    pytest.param('{"event":"client-a","channel":"private-a","data":{"q":"say \\"hi\\""}}', id="quotes"),
    pytest.param('{"event":"client-a","channel":"private-a","data":"C:\\\\path\\\\n"}', id="backslashes"),
    pytest.param('{"event":"client-a","channel":"private-a","data":"line 1\nline 2\r\n\t"}', id="newlines"),
    pytest.param('{"event":"client-a","channel":"private-a","data":"é ✓ 漢字 😀 \u2028"}', id="non-ascii"),
    pytest.param('{"data":"a=1&b=2+3 %20 \' $context.connectionId #set($x = 1)"}', id="template-syntax"),
]
CONNECTION = "L0SM9+cO/vHcCIhw="


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    template, _path = synth.template(CONTEXT)
    return load(template, Endpoints("http://127.0.0.1:1", "http://127.0.0.1:2"), "[]")


@pytest.fixture(scope="module")
def integration(deployment: Deployment) -> Integration:
    found = deployment.websocket.routes["$default"]
    assert DynamoDBIntegration.handles(found) and DynamoDBIntegration.unsupported(found) == []
    return found


def request_context(message_id: str = "ZRm+kc0E/oAMCJ0Q=") -> dict[str, Any]:
    return {"connectionId": CONNECTION, "messageId": message_id, "requestTimeEpoch": 1731324924561}


def rendered(integration: Integration, frame: str) -> dict[str, Any]:
    template = str(integration.properties["RequestTemplates"]["$default"])
    request: dict[str, Any] = json.loads(render(template, request_context(), frame))
    return request


@pytest.mark.parametrize("frame", FRAMES)
def test_any_frame_renders_to_the_put_item_api_gateway_would_send(integration: Integration, frame: str) -> None:
    request = rendered(integration, frame)
    table = request["TableName"]
    assert table.startswith("sockless-FramesStream")
    assert request["Item"] == {
        "connectionId": {"S": CONNECTION},
        "frame": {"B": base64.b64encode(frame.encode()).decode()},
        "requestTimeEpoch": {"N": "1731324924561"},
        "messageId": {"S": "ZRm+kc0E/oAMCJ0Q="},
        "expires": {"N": str(1731324924561 // 1000 + TTL_SECONDS)},
    }


@pytest.fixture
def moto(deployment: Deployment) -> Iterator[tuple[aws.Moto, Iam]]:
    iam = Iam(region=REGION, account=ACCOUNT)
    moto = aws.Moto(iam=iam)
    moto.start()
    [table] = [t for t in deployment.tables if t.stream_view_type]
    admin = client(moto.url, "AKIAADMIN")
    admin.create_table(
        TableName=table.name,
        KeySchema=table.key_schema,
        AttributeDefinitions=table.attributes,
        BillingMode="PAY_PER_REQUEST",
    )
    yield moto, iam
    admin.delete_table(TableName=table.name)
    moto.stop()


def client(url: str, access_key: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key="x", aws_session_token="x", region_name=REGION
    )
    return session.client("dynamodb", endpoint_url=url)


@pytest.mark.parametrize("frame", FRAMES)
def test_the_frame_round_trips_byte_for_byte_through_the_table(
    integration: Integration, moto: tuple[aws.Moto, Iam], frame: str
) -> None:
    request = rendered(integration, frame)
    admin = client(moto[0].url, "AKIAADMIN")
    admin.put_item(**_boto3_arguments(request))
    item = admin.get_item(TableName=request["TableName"], Key={"connectionId": {"S": CONNECTION}})["Item"]
    assert item["frame"]["B"].decode() == frame


def role_client(deployment: Deployment, integration: Integration, moto: tuple[aws.Moto, Iam], without: str) -> Any:
    """A client signing as the integration's role, with the template's statements minus ``without``'s action."""
    role = str(integration.properties["CredentialsArn"])
    statements = []
    for statement in deployment.role_statements[role]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != without]
        if kept:
            statements.append({**statement, "Action": kept})
    moto[1].add("ASIAINTEGRATION00001", Principal("apigateway-frames", role.rsplit("/", 1)[-1], tuple(statements)))
    return client(moto[0].url, "ASIAINTEGRATION00001")


def test_the_integration_role_may_put_the_frame(
    deployment: Deployment, integration: Integration, moto: tuple[aws.Moto, Iam]
) -> None:
    dynamodb = role_client(deployment, integration, moto, without="")
    body = '{"event":"pusher:ping","data":{}}'
    event = {"requestContext": request_context(), "body": body}
    asyncio.run(DynamoDBIntegration(client_for=lambda _role: dynamodb)._put(integration, event))
    table = rendered(integration, "{}")["TableName"]
    item = client(moto[0].url, "AKIAADMIN").get_item(TableName=table, Key={"connectionId": {"S": CONNECTION}})
    assert item["Item"]["frame"]["B"] == body.encode()


def test_a_role_without_put_item_is_denied_and_nothing_is_written(
    deployment: Deployment, integration: Integration, moto: tuple[aws.Moto, Iam]
) -> None:
    dynamodb = role_client(deployment, integration, moto, without="dynamodb:PutItem")
    event = {"requestContext": request_context(), "body": '{"event":"pusher:ping","data":{}}'}
    with pytest.raises(ClientError) as denied:
        asyncio.run(DynamoDBIntegration(client_for=lambda _role: dynamodb)._put(integration, event))
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    table = rendered(integration, "{}")["TableName"]
    admin = client(moto[0].url, "AKIAADMIN")
    assert "Item" not in admin.get_item(TableName=table, Key={"connectionId": {"S": CONNECTION}})
