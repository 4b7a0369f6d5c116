"""DynamoDB items in the low-level wire format (``{"attr": {"S": "..."}}``): keys and attribute values.

The store (``shared/store/dynamodb*.py``) and the rate limiter (``shared/limits/dynamodb.py``) share one table
and build their items with these; each names its own partitions.
"""

from __future__ import annotations

from typing import Any

Item = dict[str, Any]  # a DynamoDB item in the low-level wire format: {"attr": {"S": "..."}}


def key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else repr(float(value))}


def text(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def num(item: Item | None, name: str) -> float:
    """A number attribute; 0 when the item or the attribute is missing (a counter that does not exist)."""
    if not item or name not in item:
        return 0
    raw = item[name]["N"]
    return int(raw) if raw.lstrip("-").isdigit() else float(raw)
