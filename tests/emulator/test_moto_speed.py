"""The emulator's faster moto (``local_server/emulator/moto_speed.py``) answers exactly as moto does.

The same script of transactions (committed, cancelled by a condition at the start, middle or end, invalid) and
queries runs against two moto regions in one ``mock_aws``: one with the emulator's changes, one as moto
ships; every answer (result, error code, message, cancellation reasons) and the tables after each step must
be the same. Then the changes are shown to do what they are for: a transaction no longer copies the table,
a query no longer walks it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table

from local_server.emulator import moto_speed
from shared.dynamodb.table import create_table

FAST, PLAIN = "us-east-1", "eu-west-1"
TABLE = "state"


def s(value: str) -> dict[str, str]:
    return {"S": value}


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": s(pk), "sk": s(sk)}


def put(pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": {**key(pk, sk), **extra}}}


def update(pk: str, sk: str, condition: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "TableName": TABLE,
        "Key": key(pk, sk),
        "UpdateExpression": "ADD n :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }
    if condition:
        body["ConditionExpression"] = condition
    return {"Update": body}


def delete(pk: str, sk: str) -> dict[str, Any]:
    return {"Delete": {"TableName": TABLE, "Key": key(pk, sk)}}


def absent(pk: str, sk: str, old: bool = False) -> dict[str, Any]:
    body = {"TableName": TABLE, "Key": key(pk, sk), "ConditionExpression": "attribute_not_exists(pk)"}
    if old:
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"ConditionCheck": body}


TRANSACTIONS = [
    pytest.param([update("a", "1"), put("c", "1"), delete("b", "1")], id="committed"),
    pytest.param([put("e", "1"), update("a", "1"), delete("c", "1"), absent("a", "2")], id="cancelled-at-the-end"),
    pytest.param([put("f", "1"), absent("a", "1", old=True), update("a", "2")], id="cancelled-in-the-middle"),
    pytest.param([absent("a", "1"), put("g", "1")], id="cancelled-at-the-start"),
    pytest.param([update("new", "1"), update("a", "1", "n > :one")], id="an-update-creates-then-is-undone"),
    pytest.param([put("h", "1"), update("h", "1")], id="one-item-twice"),
    pytest.param([put("i", "1"), {"Put": {"TableName": TABLE, "Item": {"pk": s("no-sort-key")}}}], id="invalid"),
    pytest.param([put("j", "1"), {"Put": {"TableName": "missing", "Item": key("j", "1")}}], id="unknown-table"),
]

QUERIES = [
    pytest.param({"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": s("a")}}, id="partition"),
    pytest.param(
        {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": s("a"), ":p": s("2")},
        },
        id="prefix",
    ),
    pytest.param(
        {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": s("a")}, "Limit": 1},
        id="page",
    ),
    pytest.param(
        {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s("a")},
            "ScanIndexForward": False,
            "ProjectionExpression": "sk",
        },
        id="backwards-projected",
    ),
    pytest.param({"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": s("zz")}}, id="empty"),
]


@pytest.fixture
def clients() -> Iterator[dict[str, Any]]:
    with mock_aws():
        clients = {region: boto3.client("dynamodb", region_name=region) for region in (FAST, PLAIN)}
        for client in clients.values():
            create_table(client, TABLE)  # the store's schema, as the stack creates it
            for pk, sk, n in (("a", "1", 1), ("a", "2", 5), ("a", "3", 2), ("b", "1", 7)):
                client.put_item(TableName=TABLE, Item={**key(pk, sk), "n": {"N": str(n)}})
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][FAST]
        moto_speed.undo_by_item(backend)
        moto_speed.query_one_partition(backend)
        yield clients


def outcome(call: Any, **kwargs: Any) -> Any:
    try:
        answer = call(**kwargs)
    except ClientError as exc:
        return {"error": exc.response["Error"], "reasons": exc.response.get("CancellationReasons")}
    answer.pop("ResponseMetadata", None)
    return answer


def table(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=TABLE)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


@pytest.mark.parametrize("items", TRANSACTIONS)
def test_a_transaction_answers_and_leaves_the_table_as_moto_does(
    clients: dict[str, Any], items: list[dict[str, Any]]
) -> None:
    answers = {region: outcome(client.transact_write_items, TransactItems=items) for region, client in clients.items()}
    assert answers[FAST] == answers[PLAIN]
    assert table(clients[FAST]) == table(clients[PLAIN])


@pytest.mark.parametrize("request_", QUERIES)
def test_a_query_answers_as_moto_does(clients: dict[str, Any], request_: dict[str, Any]) -> None:
    for client in clients.values():  # a partition written after the others
        client.put_item(TableName=TABLE, Item={**key("a", "0"), "n": {"N": "0"}})
    answers = {region: outcome(client.query, TableName=TABLE, **request_) for region, client in clients.items()}
    assert answers[FAST] == answers[PLAIN]
    if "LastEvaluatedKey" in answers[FAST]:
        start = answers[FAST]["LastEvaluatedKey"]
        pages = {r: outcome(c.query, TableName=TABLE, ExclusiveStartKey=start, **request_) for r, c in clients.items()}
        assert pages[FAST] == pages[PLAIN]


def test_a_cancelled_transaction_copies_no_table(clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any) -> Any:
        raise AssertionError("the whole table was copied")

    monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)
    before = table(clients[FAST])
    answer = outcome(clients[FAST].transact_write_items, TransactItems=[put("x", "1"), absent("a", "1")])
    assert answer["error"]["Code"] == "TransactionCanceledException"
    assert table(clients[FAST]) == before


def test_a_query_reads_its_partition_only(clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_self: Table) -> Any:
        raise AssertionError("the whole table was walked")

    monkeypatch.setattr(Table, "all_items", refuse)
    answer = clients[FAST].query(
        TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": s("a")}
    )
    assert [item["sk"]["S"] for item in answer["Items"]] == ["1", "2", "3"]


# -- item answers as plain JSON (5.) ----------------------------------------------------------------------

RICH = {
    "text": s('ünïcode, "quoted", \\ and \n'),
    "n": {"N": "12.5"},
    "big": {"N": "123456789012345678901234567890"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "yes": {"BOOL": True},
    "nothing": {"NULL": True},
    "m": {"M": {"x": s("y"), "l": {"L": [{"N": "1"}, s("z"), {"M": {}}, {"SS": ["q"]}]}}},
    "empty": {"L": []},
}
BINARY = {"b": {"B": b"\x00\xff binary"}, "bs": {"BS": [b"a", b"\x01"]}, "mb": {"M": {"inner": {"B": b"\x02"}}}}

ITEM_READS = [
    pytest.param("get_item", {"TableName": TABLE, "Key": key("r", "1")}, id="get"),
    pytest.param("get_item", {"TableName": TABLE, "Key": key("r", "404")}, id="get-missing"),
    pytest.param(
        "query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s("r")},
            "ReturnConsumedCapacity": "TOTAL",
        },
        id="query-with-capacity",
    ),
    pytest.param(
        "query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s("r")},
            "Limit": 1,
        },
        id="query-page",
    ),
    pytest.param(
        "query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s("r")},
            "ProjectionExpression": "#t, m.l[1]",
            "ExpressionAttributeNames": {"#t": "text"},
        },
        id="query-projected",
    ),
    pytest.param("scan", {"TableName": TABLE, "Select": "COUNT"}, id="scan-count"),
    pytest.param("scan", {"TableName": TABLE}, id="scan"),
    pytest.param(
        "batch_get_item",
        {"RequestItems": {TABLE: {"Keys": [key("r", "1"), key("r", "2"), key("r", "404")]}}},
        id="batch-get",
    ),
    pytest.param(
        "transact_get_items",
        {"TransactItems": [{"Get": {"TableName": TABLE, "Key": key("r", n)}} for n in ("1", "2", "404")]},
        id="transact-get",
    ),
]


@pytest.fixture
def rich_table() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=FAST)
        create_table(client, TABLE)  # the store's schema, as the stack creates it
        client.put_item(TableName=TABLE, Item={**key("r", "1"), **RICH})
        client.put_item(TableName=TABLE, Item={**key("r", "2"), **RICH, "n": {"N": "-0.001"}})
        moto_speed.plain_json_items()
        yield client


@pytest.mark.parametrize(("operation", "request_"), ITEM_READS)
def test_item_answers_in_plain_json_read_as_moto_serializes_them(
    rich_table: Any, operation: str, request_: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.serialize import ResponseSerializer
    from moto.dynamodb.responses import DynamoResult

    ours = outcome(getattr(rich_table, operation), **request_)
    with monkeypatch.context() as patch:  # moto's own serialization of the same answer
        patch.setattr(DynamoResult, "execute_result", DynamoResult.__mro__[1].execute_result)
        assert outcome(getattr(rich_table, operation), **request_) == ours

    def walked(*_args: Any) -> Any:
        raise AssertionError("serialized by walking the model")

    monkeypatch.setattr(ResponseSerializer, "serialize", walked)
    assert outcome(getattr(rich_table, operation), **request_) == ours


def test_binary_attributes_still_take_moto_serializer(rich_table: Any) -> None:
    rich_table.put_item(TableName=TABLE, Item={**key("r", "3"), **BINARY})
    item = rich_table.get_item(TableName=TABLE, Key=key("r", "3"))["Item"]
    assert item["b"] == {"B": b"\x00\xff binary"}
    assert item["bs"] == {"BS": [b"a", b"\x01"]}
    assert item["mb"] == {"M": {"inner": {"B": b"\x02"}}}


# -- expressions kept per text (6.) ------------------------------------------------------------------------

COUNTER = {
    "UpdateExpression": "ADD #n :one SET #t = :now",
    "ConditionExpression": "attribute_not_exists(#n) OR #n < :max",
    "ExpressionAttributeNames": {"#n": "n", "#t": "t"},
}


def expression_script(client: Any) -> list[Any]:
    """The store's kind of traffic: the same expressions with new values, conditions that hold and fail,
    in plain writes and transactions, and requests moto rejects (twice each)."""
    answers = []
    for i in range(5):  # the counter passes :max on the fourth round
        values = {":one": {"N": "1"}, ":now": {"N": str(i)}, ":max": {"N": "4"}}
        answers.append(
            outcome(
                client.update_item,
                TableName=TABLE,
                Key=key("c", "#stats"),
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **COUNTER,
            )
        )
        claim = {
            "TableName": TABLE,
            "Item": {**key("c", f"s#{i % 3}"), "tok": s(f"t{i % 2}")},
            "ConditionExpression": "attribute_not_exists(pk) OR #tok = :tok",
            "ExpressionAttributeNames": {"#tok": "tok"},
            "ExpressionAttributeValues": {":tok": s("t0")},
        }
        answers.append(outcome(client.put_item, **claim, ReturnValuesOnConditionCheckFailure="ALL_OLD"))
        counter = {"TableName": TABLE, "Key": key("c", f"#n{i % 2}"), "ExpressionAttributeValues": values, **COUNTER}
        answers.append(outcome(client.transact_write_items, TransactItems=[{"Update": counter}]))
    for _ in range(2):
        bad_update = {**COUNTER, "UpdateExpression": "ADD #n"}
        answers.append(outcome(client.update_item, TableName=TABLE, Key=key("c", "x"), **bad_update))
        unused_name = {**COUNTER, "ExpressionAttributeNames": {"#n": "n", "#t": "t", "#x": "unused"}}
        values = {":one": {"N": "1"}, ":now": {"N": "1"}, ":max": {"N": "4"}}
        answers.append(
            outcome(
                client.update_item,
                TableName=TABLE,
                Key=key("c", "x"),
                ExpressionAttributeValues=values,
                **unused_name,
            )
        )
    return answers


@pytest.fixture
def two_regions() -> Iterator[dict[str, Any]]:
    with mock_aws():
        clients = {region: boto3.client("dynamodb", region_name=region) for region in (FAST, PLAIN)}
        for client in clients.values():
            create_table(client, TABLE)
        moto_speed.cached_expressions()
        yield clients


def test_kept_expressions_answer_as_expressions_parsed_afresh(
    two_regions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    kept = expression_script(two_regions[FAST])
    make = UpdateExpressionParser.make.original
    with monkeypatch.context() as patch:  # moto as it ships: every expression parsed at every request
        patch.setattr(UpdateExpressionParser, "make", classmethod(make))
        patch.setattr(
            ConditionExpressionParser,
            "_lex_condition_expression",
            ConditionExpressionParser._lex_condition_expression.original,  # type: ignore[attr-defined]
        )
        fresh = expression_script(two_regions[PLAIN])
    assert kept == fresh
    assert table(two_regions[FAST]) == table(two_regions[PLAIN])
    assert any("error" in answer for answer in kept) and any("Attributes" in answer for answer in kept)
    # The kept tree is what moto's validator copies, never what it changes: still as parsed.
    text = COUNTER["UpdateExpression"]
    assert pickle.dumps(UpdateExpressionParser.make(text)) == pickle.dumps(make(UpdateExpressionParser, text))
    assert UpdateExpressionParser.make.cache.cache_info().hits > 0
    assert ConditionExpressionParser._lex_condition_expression.cache.cache_info().hits > 0  # type: ignore[attr-defined]
