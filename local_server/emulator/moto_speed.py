"""Costs of moto that grow with the data or recur at every request, removed from the emulator's moto
(``install``, called by ``aws.Moto.start``).

1. **Transactions copied whole tables.** moto (5.x) makes ``TransactWriteItems`` all-or-nothing by
   deep-copying every table the transaction names before it applies the first item, and putting the copies
   back when an item fails. The copy costs time in proportion to the table: the emulator's one table holds
   every connection, channel and member, so each subscribe (a transaction) got slower as clients connected —
   half of the emulator's CPU with 100 subscriptions, and a connect storm of 1,000 clients never finished
   (bench/RESULTS.md, "Emulator speed"). Here the emulator's backend gets the same method with the same
   checks, order, errors and cancellation reasons, but the state kept for a rollback is a copy of each named
   item as it was (or its absence), restored in reverse order. Requests reach moto one at a time
   (``aws.Moto``), so nothing changes the items between the copy and the restore. Tables with a stream are
   left to moto's own method (a rollback must also take back their stream records).
2. **Every Query sorted the whole table.** moto answers a ``Query`` on the table's key by sorting all the
   table's items (``Table.all_items``) and keeping the partition's. The store queries a partition for every
   broadcast (the channel's subscribers) and disconnect (the connection's channels), so each got slower with
   every connection. For the length of such a query the table's ``all_items`` gives that partition's items
   only, in the order moto's would have kept them (queries on an index are left as they are).
3. **SQS read the clock through ``datetime`` for every message, several times per request.** Whether a
   message is visible or delayed, and a queue's attributes (the approximate counts walk every message), are
   decided with ``moto.core.utils.unix_time``: two ``datetime`` constructions per reading. With a burst of
   frames in the FIFO queue that was most of the emulator's CPU. ``moto.sqs.models`` gets the same
   readings (seconds since the epoch, UTC) from ``time.time()``.
4. **Every request listed its responder's methods.** moto finds the method for an action by listing the
   responder class's functions (``inspect.getmembers``) and converting the action's name, at every request:
   about a tenth of a ``GetItem``'s CPU. Both answers never change for a class or a name, and are cached.
5. **Items were serialized by walking the service model.** moto 5 turns every answer into its wire form
   with a generic serializer that walks botocore's output shape member by member: two thirds of a
   ``Query`` of 1,000 subscribers (~400 ms), which every broadcast to them runs. DynamoDB speaks plain JSON
   and its item-returning answers (``GetItem``, ``Query``, ``Scan``, ``BatchGetItem``, ``TransactGetItems``)
   hold only JSON types once moto has expanded its ``DynamoType`` values, so ``json.dumps`` gives the same
   document (tests/emulator/test_moto_speed.py compares the two); an answer that holds anything else
   (binary values are bytes) takes moto's own serializer.
6. **Every request parsed its expressions again, twice.** moto parses an ``UpdateExpression`` into a tree
   (``UpdateExpressionParser.make``) once to validate the request and once to apply it, and lexes every
   condition expression (``ConditionExpressionParser``) as often, with patterns compiled at each token;
   the store sends the same dozen expressions with new values every time. Both depend on the expression's
   text alone: the update tree is kept per text (moto's validator applies the names and values to a deep
   copy of it, ``Validator.__init__``, and the rest only reads it), and so are the condition's tokens (named
   tuples, read only: each parse gets its own queue of them). Names and values are applied afresh at every
   request, as before, and an expression moto rejects is rejected again (failures are not kept).
"""

from __future__ import annotations

import copy
import functools
import json
import time
import types
from collections import deque
from typing import Any

from moto.core.utils import camelcase_to_underscores, method_names_from_class, unix_time
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

# (table name, hash key, range key or None, the item before the transaction or None when absent)
Saved = tuple[str, DynamoType, DynamoType | None, Item | None]


def install(dynamodb: DynamoDBBackend) -> None:
    """The changes: ``dynamodb`` (the emulator's backend) gets the item-level ``transact_write_items``
    and the partition-only ``query``; moto's SQS models the fast clock, its responders the cached names
    and DynamoDB's item answers the plain JSON serialization."""
    undo_by_item(dynamodb)
    query_one_partition(dynamodb)
    sqs_clock()
    cached_names()
    plain_json_items()
    cached_expressions()


# DynamoDB operations whose answers are items (and counts, keys, consumed capacity): JSON types only.
ITEM_ANSWERS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


def plain_json_items() -> None:
    """DynamoDB's item answers are serialized by ``json.dumps`` when they hold JSON types only (5. above)."""
    from moto.dynamodb.responses import DynamoResult

    if getattr(DynamoResult.execute_result, "plain_json", False):
        return
    original = DynamoResult.execute_result

    def execute_result(self: DynamoResult, context: Any) -> Any:
        if context.operation_model.name in ITEM_ANSWERS:
            try:
                body = json.dumps(self.result)
            except TypeError:  # bytes (binary attributes): moto's serializer base64-encodes them
                pass
            else:
                return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return original(self, context)

    execute_result.plain_json = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]


# Distinct expression texts kept (the store sends about a dozen; tests and consoles may send more).
EXPRESSIONS_KEPT = 512


def cached_expressions() -> None:
    """Update expressions' trees and condition expressions' tokens kept per text (6. above)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    if getattr(UpdateExpressionParser.make, "cached", False):
        return
    make = UpdateExpressionParser.make.__func__
    tree = functools.lru_cache(maxsize=EXPRESSIONS_KEPT)(lambda text: make(UpdateExpressionParser, text))

    def cached_make(cls: type, expression: str) -> Any:
        return tree(expression) if cls is UpdateExpressionParser else make(cls, expression)

    cached_make.cached = True  # type: ignore[attr-defined]
    cached_make.cache = tree  # type: ignore[attr-defined]
    cached_make.original = make  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(cached_make)

    lex = ConditionExpressionParser._lex_condition_expression
    # The lexer reads nothing of its parser but the text (and the class's constants).
    tokens = functools.lru_cache(maxsize=EXPRESSIONS_KEPT)(
        lambda text: tuple(lex(ConditionExpressionParser(text, {}, {})))
    )

    def lex_condition_expression(self: ConditionExpressionParser) -> Any:
        return deque(tokens(self.condition_expression))

    lex_condition_expression.cache = tokens  # type: ignore[attr-defined]
    lex_condition_expression.original = lex  # type: ignore[attr-defined]
    ConditionExpressionParser._lex_condition_expression = lex_condition_expression  # type: ignore[method-assign]


def cached_names() -> None:
    """moto's responders and SQS models look up method and attribute names through caches (4. above)."""
    import moto.core.responses as responses
    import moto.sqs.models as sqs_models

    responses.method_names_from_class = _method_names  # type: ignore[attr-defined]
    responses.camelcase_to_underscores = _snake  # type: ignore[attr-defined]
    sqs_models.camelcase_to_underscores = _snake  # type: ignore[attr-defined]


@functools.cache
def _method_names(clazz: object) -> list[str]:
    return method_names_from_class(clazz)


@functools.cache
def _snake(name: str) -> str:
    return camelcase_to_underscores(name)


def query_one_partition(backend: DynamoDBBackend) -> None:
    """``backend.query`` on a table's key looks at the partition only (2. above)."""
    original = type(backend).query

    def query(self: DynamoDBBackend, table_name: str, hash_key_dict: Any, *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        # args[6], when given, is the index name (moto's backend passes it by keyword)
        if table is None or not hash_key_dict or kwargs.get("index_name") is not None or len(args) > 6:
            return original(self, table_name, hash_key_dict, *args, **kwargs)
        partition = DynamoType(hash_key_dict)
        table.all_items = lambda: _partition(table, partition)  # type: ignore[method-assign]
        try:
            return original(self, table_name, hash_key_dict, *args, **kwargs)
        finally:
            del table.all_items

    backend.query = types.MethodType(query, backend)  # type: ignore[method-assign]


def _partition(table: Table, hash_key: DynamoType) -> list[Item]:
    """``table.all_items()`` restricted to ``hash_key``'s items (same order: by range key)."""
    found = table.items.get(hash_key)
    if found is None:
        return []
    if not table.range_key_attr:
        return [found]  # type: ignore[list-item]  # (moto's typing of a hash-only table)
    return sorted(found.values(), key=lambda item: item.range_key)


def sqs_clock() -> None:
    """moto's SQS models read the clock with ``time.time()`` (3. above; for the whole process)."""
    import moto.sqs.models as sqs_models

    sqs_models.unix_time = _unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[attr-defined]


def _unix_time(dt: Any = None) -> float:
    return time.time() if dt is None else unix_time(dt)


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


def undo_by_item(backend: DynamoDBBackend) -> None:
    """``backend.transact_write_items`` rolls back the items it touched, not whole tables (1. above)."""
    original = type(backend).transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        if any(table.stream_shard is not None for table in self.tables.values()):
            return original(self, transact_items)
        return _transact_write_items(self, transact_items)

    backend.transact_write_items = types.MethodType(transact_write_items, backend)  # type: ignore[method-assign]


def _saved(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[Saved]:
    """Each named item as it is now; an item whose table or key is malformed fails on its own later."""
    saved: list[Saved] = []
    for element in transact_items:
        for op_type, op in element.items():
            table = backend.tables.get(op.get("TableName", ""))
            if table is None:
                continue
            try:
                if op_type == "Put":
                    attrs = op["Item"]
                    key = {name: attrs[name] for name in (table.hash_key_attr, table.range_key_attr) if name}
                else:
                    key = op["Key"]
                hash_key, range_key = backend.get_keys_value(table, key)
                before = table.get_item(hash_key, range_key)
            except Exception:  # moto raises the request's own error for it below
                continue
            saved.append((table.name, hash_key, range_key, copy.deepcopy(before)))
    return saved


def _restore(backend: DynamoDBBackend, saved: list[Saved]) -> None:
    for table_name, hash_key, range_key, before in reversed(saved):
        items = backend.tables[table_name].items
        if range_key is None:
            if before is None:
                items.pop(hash_key, None)
            else:
                items[hash_key] = before  # type: ignore[assignment]  # (moto's own typing of a hash-only table)
        elif before is not None:
            items[hash_key][range_key] = before
        elif hash_key in items:
            items[hash_key].pop(range_key, None)


def _transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2's ``DynamoDBBackend.transact_write_items`` with ``_saved``/``_restore`` for its rollback."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    saved = _saved(backend, transact_items)
    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any] | None] | tuple[None, None, None]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                attrs = op["Item"]
                table = backend.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            check_unicity(table_name, key)
            current = backend.get_item(table_name, key)
            if condition_expression is not None:
                condition = get_filter_expression(condition_expression, names, values)
                if not condition.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type == "Put":
                backend.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                backend.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Update":
                backend.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            _restore(backend, saved)
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        _restore(backend, saved)
        raise TransactionCanceledException(errors)
