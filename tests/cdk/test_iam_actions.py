"""Every AWS action the functions' code can call is allowed by the synthesized role of each function that
calls it: found in the code, not listed by hand, so a new call without its grant fails here, not on AWS.

The operations come from the bundle's own sources (``shared/`` and ``functions/``): every string or
attribute that names an operation of the services the functions use (botocore's service models), e.g.
``self.table.call("update_item", ...)`` or ``client.post_to_connection(...)``. They map to IAM actions the
way AWS authorizes them; for ``TransactWriteItems`` AWS authorizes each item as its own action
(``Put`` -> ``dynamodb:PutItem``, ``ConditionCheck`` -> ``dynamodb:ConditionCheckItem``; Amazon DynamoDB
developer guide, "Using IAM with DynamoDB transactions"), so the item kinds the code builds count too.

Which function needs which service follows the stack's own flags (``FunctionSpec``): every function uses
the store; ``posts`` -> the management API; ``enqueues`` -> the webhook queue; ``fans_out`` and
``connect`` -> Lambda Invoke. The emulator enforces the same policies at run time (docs/aws.md).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from botocore.session import get_session

from cdk.components.bundle import source_files
from cdk.stack import FUNCTIONS
from tests.cdk.conftest import REPO_ROOT, Synth

# boto3 service -> IAM prefix.
SERVICES = {
    "dynamodb": "dynamodb",
    "sqs": "sqs",
    "lambda": "lambda",
    "apigatewaymanagementapi": "execute-api",
}
# Operations whose IAM action has another name than the operation.
IAM_ACTION = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "execute-api:PostToConnection": "execute-api:ManageConnections",
    "execute-api:GetConnection": "execute-api:ManageConnections",
    "execute-api:DeleteConnection": "execute-api:ManageConnections",
}
# A TransactWriteItems item kind -> the action AWS authorizes it as.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Calls the code has that no Lambda function makes: the local server's SQS poller receives and deletes
# itself (on Lambda the event source mapping does that with the webhooks function's role, checked below);
# ``create_table`` is for the emulator and tests (on AWS the stack creates the table).
NOT_ON_LAMBDA = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessageBatch",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "dynamodb:CreateTable",
    "dynamodb:UpdateTimeToLive",
}
EVENT_SOURCE_MAPPING = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}


@cache
def _operations() -> dict[str, set[str]]:
    """snake_case operation name -> the IAM actions it maps to, over the services the functions use."""
    from botocore import xform_name

    session = get_session()
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for operation in session.get_service_model(service).operation_names:
            action = f"{prefix}:{operation}"
            found.setdefault(xform_name(operation), set()).add(IAM_ACTION.get(action, action))
    return found


def _names(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.Attribute):
            yield node.attr


@cache
def actions_in_code() -> frozenset[str]:
    """The IAM actions of every AWS operation the bundle's sources name."""
    operations = _operations()
    actions: set[str] = set()
    transactions = False
    item_kinds: set[str] = set()
    for path in source_files(REPO_ROOT):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = set(_names(tree))
        for name in names & operations.keys():
            actions |= operations[name]
        transactions |= "transact_write_items" in names
        if "TransactItems" in names or ".op(" in path.read_text(encoding="utf-8"):
            item_kinds |= names & TRANSACT_ITEM_ACTIONS.keys()
    if transactions:
        actions.discard("dynamodb:TransactWriteItems")  # not an action of its own: each item is authorized
        actions |= {TRANSACT_ITEM_ACTIONS[kind] for kind in item_kinds}
    return frozenset(actions)


def required(name: str, store: str) -> set[str]:
    """What the function ``name`` calls, by service, from the stack's flags and the code's operations."""
    spec = FUNCTIONS[name]
    code = actions_in_code() - NOT_ON_LAMBDA
    needed: set[str] = set()
    if store == "dynamodb":
        needed |= {a for a in code if a.startswith("dynamodb:")}
    if spec.posts:
        needed |= {a for a in code if a.startswith("execute-api:")}
    if spec.enqueues:
        needed |= {"sqs:SendMessage"} & code
    if spec.fans_out or name == "connect":
        needed |= {"lambda:InvokeFunction"}
    if name == "webhooks":
        needed |= EVENT_SOURCE_MAPPING
    return needed


def allowed(synth: Synth, handler: str) -> set[str]:
    out: set[str] = set()
    for statement in synth.statements(handler):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        action: Any = statement["Action"]
        out |= {action} if isinstance(action, str) else set(action)
    return out


def test_the_scan_finds_the_calls_the_store_and_sender_are_known_to_make() -> None:
    """The scan itself works: it sees a transaction's items, a batch write and a post."""
    found = actions_in_code()
    assert {
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:Query",
        "sqs:SendMessage",
        "lambda:InvokeFunction",
        "execute-api:ManageConnections",
    } <= found
    assert "dynamodb:TransactWriteItems" not in found


def test_the_table_grant_holds_no_action_the_code_does_not_call() -> None:
    """Least privilege: an action the store stopped using (ConditionCheckItem, when the subscribe
    transaction lost its condition check) leaves the grant with it."""
    from cdk.components.state import DYNAMODB_DATA_ACTIONS

    assert set(DYNAMODB_DATA_ACTIONS) <= actions_in_code()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_is_allowed_every_action_its_code_calls(either: Synth, name: str) -> None:
    missing = required(name, either.stack.config.store) - allowed(either, FUNCTIONS[name].handler)
    assert not missing, f"{name} calls {sorted(missing)} but its role does not allow them"


def test_the_code_scanned_is_the_bundle() -> None:
    """``source_files`` is what the bundle ships: the handlers' folders are in it."""
    scanned = {p.relative_to(REPO_ROOT).as_posix() for p in source_files(REPO_ROOT)}
    for name in FUNCTIONS:
        assert f"functions/{name}/handler.py" in scanned
