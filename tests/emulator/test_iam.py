"""IAM in the emulator: what each request needs, how policies decide, and that a missing grant breaks a
real flow the way it would on AWS.

The first tests are the rules (Amazon DynamoDB developer guide, "Using IAM with DynamoDB transactions":
each item of a transaction is authorized as its own action). The last runs the emulator on the
synthesized template with one grant removed and shows the client-visible failure.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cdk.stack import FUNCTIONS
from local_server.emulator import synth
from local_server.emulator.iam import Iam, Principal, allowed
from tests.conftest import DEFAULT_APP
from tests.serverproc import ServerProcess
from tests.webhooks.support import APP_A, PusherSocket

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/t"


def test_an_allow_matches_actions_case_insensitively_and_resources_with_wildcards() -> None:
    statements = [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "sqs:Send*"], "Resource": "arn:aws:*:us-east-1:*:t*"},
    ]
    assert allowed(statements, "DynamoDB:getitem", TABLE)
    assert allowed(statements, "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:tq")
    assert not allowed(statements, "dynamodb:PutItem", TABLE)
    assert not allowed(statements, "dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:123456789012:table/t")


def test_an_explicit_deny_wins_over_an_allow() -> None:
    statements = [
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE},
    ]
    assert allowed(statements, "dynamodb:PutItem", TABLE)
    assert not allowed(statements, "dynamodb:DeleteItem", TABLE)


def test_a_transaction_needs_each_items_own_action_and_a_batch_its_action_on_every_table() -> None:
    iam = Iam(region="us-east-1", account="123456789012")
    transaction = {
        "TransactItems": [
            {"ConditionCheck": {"TableName": "t", "Key": {}}},
            {"Put": {"TableName": "t", "Item": {}}},
            {"Update": {"TableName": "u", "Key": {}}},
            {"Delete": {"TableName": "t", "Key": {}}},
        ]
    }
    assert iam.dynamodb("TransactWriteItems", json.dumps(transaction).encode()) == [
        ("dynamodb:ConditionCheckItem", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", TABLE.replace("table/t", "table/u")),
        ("dynamodb:DeleteItem", TABLE),
    ]
    batch = {"RequestItems": {"t": [{"PutRequest": {}}, {"DeleteRequest": {}}], "u": [{"PutRequest": {}}]}}
    assert iam.dynamodb("BatchWriteItem", json.dumps(batch).encode()) == [
        ("dynamodb:BatchWriteItem", TABLE),
        ("dynamodb:BatchWriteItem", TABLE.replace("table/t", "table/u")),
    ]
    query = {"TableName": "t", "IndexName": "by-time"}
    assert iam.dynamodb("Query", json.dumps(query).encode()) == [("dynamodb:Query", f"{TABLE}/index/by-time")]


def test_the_caller_is_known_by_its_access_key_and_others_are_not_checked() -> None:
    iam = Iam(region="us-east-1", account="123456789012")
    iam.add(
        "ASIAFN", Principal("fn", "FnRole", ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE},))
    )
    auth = "AWS4-HMAC-SHA256 Credential=ASIAFN/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host"
    assert iam.check(auth, [("dynamodb:GetItem", TABLE)]) is None
    denial = iam.check(auth, [("dynamodb:GetItem", TABLE), ("dynamodb:ConditionCheckItem", TABLE)])
    assert denial is not None and denial.action == "dynamodb:ConditionCheckItem"
    assert "is not authorized to perform: dynamodb:ConditionCheckItem" in denial.message("123456789012")
    admin = auth.replace("ASIAFN", "emulator")
    assert iam.check(admin, [("dynamodb:DeleteTable", TABLE)]) is None


def test_a_remembered_verdict_is_the_policys_and_a_new_grant_is_a_new_principal() -> None:
    """Each principal works a verdict out once; the answers stay IAM's, and a grant added later (the apps'
    Lambda targets, given at start-up) replaces the principal, so nothing answers from the old memory."""
    iam = Iam(region="us-east-1", account="123456789012")
    connection = "arn:aws:execute-api:us-east-1:123456789012:api/prod/POST/@connections/abc="
    reads = {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE}
    iam.add("ASIAFN", Principal("fn", "FnRole", (reads,)))
    auth = "AWS4-HMAC-SHA256 Credential=ASIAFN/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host"
    needs = [("execute-api:ManageConnections", connection)]
    for _ in range(3):
        assert iam.check(auth, [("dynamodb:GetItem", TABLE)]) is None
        assert iam.check(auth, needs) is not None
    manages = {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": "arn:aws:execute-api:*"}
    iam.add("ASIAFN", Principal("fn", "FnRole", (reads, manages)))
    assert iam.check(auth, needs) is None
    assert len(iam.denials) == 3


# -- a grant removed from the stack ------------------------------------------------------------------------


def without_grant(template: dict[str, Any], handler: str, action: str) -> dict[str, Any]:
    """The template with ``action`` removed from every policy of ``handler``'s role."""
    resources = template["Resources"]
    [function] = [
        r for r in resources.values() if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == handler
    ]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    removed = 0
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in resource["Properties"]["Roles"]:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            kept = [a for a in actions if a != action]
            removed += len(actions) - len(kept)
            statement["Action"] = kept or ["none:None"]
    assert removed, f"{handler} had no {action} grant to remove"
    return template


async def denials(http: aiohttp.ClientSession, server: ServerProcess) -> list[dict[str, str]]:
    async with http.get(server.url + "/@emulator/stats") as response:
        denied: list[dict[str, str]] = (await response.json())["iam"]["denied"]
        return denied


@pytest.mark.e2e
async def test_without_its_manage_connections_grant_the_welcome_never_reaches_the_client(tmp_path: Path) -> None:
    template, _ = synth.template()
    intact = tmp_path / "intact.template.json"
    intact.write_text(json.dumps(template))
    broken = tmp_path / "broken.template.json"
    welcome = FUNCTIONS["welcome"].handler
    broken.write_text(json.dumps(without_grant(template, welcome, "execute-api:ManageConnections")))
    url = "/app/{key}?protocol=7&client=js&version=8.4.0".format(key=DEFAULT_APP["key"])
    for path, works in ((intact, True), (broken, False)):
        args = ("--emulate-lambda", "--sweep-interval", "0", "--template", str(path))
        server = ServerProcess({"apps": [DEFAULT_APP]}, args=args).start(timeout=60)
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url + url) as ws:
                if works:
                    frame = await ws.receive_json(timeout=20)  # the first connection is a cold start
                    assert frame["event"] == "pusher:connection_established"
                    assert await denials(http, server) == []
                    continue
                # AWS answers the welcome's PostToConnection with AccessDeniedException: the client hears
                # nothing (pusher-js would give up after its 15 s transport timeout).
                deadline = asyncio.get_running_loop().time() + 20
                while not (denied := await denials(http, server)):
                    assert asyncio.get_running_loop().time() < deadline, "no denial recorded"
                    await asyncio.sleep(0.1)
                assert {d["action"] for d in denied} == {"execute-api:ManageConnections"}
                assert all("WelcomeFunction" in d["function"] for d in denied)
                with pytest.raises(TimeoutError):
                    await ws.receive(timeout=1.0)
        finally:
            server.cleanup()


@pytest.mark.e2e
async def test_a_queue_reader_other_than_the_webhook_worker_may_not_invoke_a_lambda_webhook_target(
    tmp_path: Path,
) -> None:
    # The apps name a Lambda webhook target; the stack lets the webhooks function invoke it (its positive
    # path: test_aws_behaviour.py, test_a_lambda_webhook_target_is_invoked_with_the_pusher_body) and nothing
    # else. The message function also reads a queue (the ordered frames queue): here it tries, and is denied.
    log = tmp_path / "echo.jsonl"
    app = {**APP_A, "webhooks": [{"lambda": {"function_name": "customer-hook", "region": "us-east-1"}}]}
    message = FUNCTIONS["message"].handler
    args = (
        "--emulate-lambda",
        "--sweep-interval",
        "0",
        "--lambda-function",
        "customer-hook=tests.emulator.echo_functions.customer_hook",
        "--replace-handler",
        f"{message}=tests.emulator.echo_functions.invoke_customer_hook",
    )
    server = ServerProcess({"apps": [app]}, args=args, env={"ECHO_LOG": str(log)}).start(timeout=60)
    try:
        async with aiohttp.ClientSession() as http:
            socket = await PusherSocket.connect(http, server.ws_url, APP_A)
            await socket.ws.send_str("customer-hook")  # the frame goes through the FIFO queue to the reader

            def outcomes() -> list[dict[str, str]]:
                lines = log.read_text().splitlines() if log.exists() else []
                return [e["event"] for e in map(json.loads, lines) if e["kind"] == "invoke"]

            deadline = asyncio.get_running_loop().time() + 20
            while not outcomes():
                assert asyncio.get_running_loop().time() < deadline, "the frame never reached the reader"
                await asyncio.sleep(0.1)
            assert outcomes() == [{"target": "customer-hook", "outcome": "AccessDeniedException"}]
            [denied] = await denials(http, server)
            assert "MessageFunction" in denied["function"] and denied["action"] == "lambda:InvokeFunction"
            assert denied["resource"] == "arn:aws:lambda:us-east-1:123456789012:function:customer-hook"
            assert not [e for e in map(json.loads, log.read_text().splitlines()) if e["kind"] == "customer_hook"]
            await socket.close()
    finally:
        server.cleanup()
