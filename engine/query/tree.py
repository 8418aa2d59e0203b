"""The filter tree that every reader of the query language builds and every store compiles:
`Condition`s combined by `And`, `Or` and `Not`, and the bounds on its size.

A `field=value` parameter (`engine.query.values`), a `_filter` expression
(`engine.query.expression`) and a JSON filter (`engine.query.json_filter`) all become a `Node`;
`engine.store.sqlite` and `engine.store.mongo_query` compile it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "regex", "exists"]
#: what a condition compares with: filter values are strings; JSON filters may use numbers
Scalar = str | int | float | None


@dataclass(frozen=True)
class Condition:
    """`field <op> value`, with MongoDB's meaning on every backend.

    On a path through an array (`phases.status`), true when any element matches; `ne` is true
    when no element equals the value; a missing field equals `None`. `in` takes a tuple of
    values, `exists` the value True (present, even when null). Comparisons only hold between
    values of one type (a string is never greater than a number).
    """

    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Condition | And | Or | Not


#: how deeply a `_filter` may nest, and how many conditions it may hold
MAX_FILTER_DEPTH = 20
MAX_CONDITIONS = 100
#: how many nodes the filters of one query hold in all (its parameters, every `_filter`, the
#: `$match` stages of `_aggregate`): each condition, each and/or/not, each value of an `in`
MAX_QUERY_NODES = 5000


def size(node: Node) -> int:
    """How many nodes `node` counts toward `MAX_QUERY_NODES`, walked without recursion."""
    total = 0
    stack: list[Node] = [node]
    while stack:
        item = stack.pop()
        total += 1
        if isinstance(item, Condition):
            if item.op == "in":
                total += len(item.value)
        elif isinstance(item, Not):
            stack.append(item.item)
        else:
            stack.extend(item.items)
    return total
