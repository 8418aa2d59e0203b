"""`_filter` as a MongoDB-style JSON filter (`{"status": {"$in": ["failed", "running"]}}`), and
the `$match` stage of `_aggregate`, read into a filter tree; every operator outside
`SAFE_OPERATORS` is refused by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from procexec.engine.errors import BadRequest, excerpt
from procexec.engine.query.fields import check_document_field, check_group_field
from procexec.engine.query.json_input import json_type
from procexec.engine.query.regex import with_flags
from procexec.engine.query.tree import (
    MAX_CONDITIONS,
    MAX_FILTER_DEPTH,
    And,
    Condition,
    Node,
    Not,
    Op,
    Or,
    Scalar,
)
from procexec.engine.query.values import check_closed_values, check_in_values

#: the operators a JSON `_filter` may use; anything else is refused by name
SAFE_OPERATORS = (
    "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte",
    "$in", "$nin", "$exists", "$regex",
)  # fmt: skip
#: integers a JSON filter may compare with (those both SQLite and MongoDB store exactly)
MAX_INTEGER = 2**53

_COMBINATORS = {"$and", "$or", "$nor"}
_FIELD_OPERATORS: dict[str, Op] = {
    "$eq": "eq",
    "$ne": "ne",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
}
_REGEX_OPTIONS = re.compile(r"^[imsx]*\Z")


class _JsonFilter:
    """Turns a MongoDB-style filter into a `Node` tree, refusing every operator not listed."""

    def __init__(self, param: str, fields: Sequence[str] | None) -> None:
        self.param = param
        self.conditions = 0
        self.fields = fields

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"{self.param}: {message}")

    def refuse(self, operator: str, where: str) -> BadRequest:
        allowed = ", ".join(SAFE_OPERATORS)
        return self.fail(
            f"operator '{excerpt(operator)}' is not allowed{where} (allowed: {allowed})"
        )

    def document(self, spec: Any, depth: int) -> Node:
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        if not isinstance(spec, dict):
            raise self.fail(
                'a filter must be a JSON object such as {"status": "failed"}, '
                f"not {json_type(spec)}"
            )
        items: list[Node] = []
        for key, value in spec.items():
            if key.startswith("$"):
                if key not in _COMBINATORS:
                    if key in SAFE_OPERATORS:
                        raise self.fail(f"operator '{excerpt(key)}' must be applied to a field")
                    raise self.refuse(key, "")
                if not isinstance(value, list) or not value:
                    raise self.fail(f"'{excerpt(key)}' takes a non-empty array of filters")
                parts = tuple(self.document(item, depth + 1) for item in value)
                group = (
                    parts[0] if len(parts) == 1 else (And(parts) if key == "$and" else Or(parts))
                )
                items.append(Not(group) if key == "$nor" else group)
            else:
                if self.fields is None:
                    check_document_field(key, self.param)
                else:
                    check_group_field(key, self.param, self.fields)
                items.append(self.field(key, value, depth))
        if not items:
            return And(())
        return items[0] if len(items) == 1 else And(tuple(items))

    def field(self, name: str, value: Any, depth: int) -> Node:
        if isinstance(value, dict) and value and all(key.startswith("$") for key in value):
            return self.operators(name, value, depth)
        if isinstance(value, dict):
            if any(key.startswith("$") for key in value):
                raise self.fail(f"'{excerpt(name)}' mixes operators and fields in one object")
            raise self.fail(
                f"value of '{excerpt(name)}' must be a string, number or null, or an object of "
                f"operators"
            )
        return self.condition(name, "eq", self.scalar(name, value))

    def operators(self, name: str, spec: dict[str, Any], depth: int) -> Node:
        items: list[Node] = []
        options = spec.get("$options")
        if options is not None and "$regex" not in spec:
            raise self.fail(f"'$options' of '{excerpt(name)}' needs '$regex'")
        for operator, value in spec.items():
            if operator in _FIELD_OPERATORS:
                items.append(
                    self.condition(name, _FIELD_OPERATORS[operator], self.scalar(name, value))
                )
            elif operator in ("$in", "$nin"):
                if not isinstance(value, list):
                    raise self.fail(
                        f"'{excerpt(operator)}' of '{excerpt(name)}' takes an array of values"
                    )
                try:
                    check_in_values(excerpt(name), len(value), f"'{excerpt(operator)}'")
                except BadRequest as exc:
                    raise self.fail(str(exc)) from None
                values = tuple(self.scalar(name, item) for item in value)
                inside = self.condition(name, "in", values)
                items.append(inside if operator == "$in" else Not(inside))
            elif operator == "$exists":
                if not isinstance(value, bool):
                    raise self.fail(f"'$exists' of '{excerpt(name)}' takes true or false")
                present = self.condition(name, "exists", True)
                items.append(present if value else Not(present))
            elif operator == "$regex":
                if not isinstance(value, str):
                    raise self.fail(f"'$regex' of '{excerpt(name)}' takes a string")
                if options is not None and (
                    not isinstance(options, str) or not _REGEX_OPTIONS.match(options)
                ):
                    raise self.fail(
                        f"'$options' of '{excerpt(name)}' takes some of the letters i, m, s, x"
                    )
                try:
                    pattern = with_flags(name, value, options or "")
                except BadRequest as exc:
                    raise self.fail(str(exc)) from None
                items.append(self.condition(name, "regex", pattern))
            elif operator == "$options":
                continue
            elif operator == "$not":
                if not (
                    isinstance(value, dict) and value and all(k.startswith("$") for k in value)
                ):
                    raise self.fail(f"'$not' of '{excerpt(name)}' takes an object of operators")
                items.append(Not(self.operators(name, value, depth + 1)))
            elif operator in SAFE_OPERATORS:
                raise self.fail(
                    f"operator '{excerpt(operator)}' cannot be applied to the field "
                    f"'{excerpt(name)}'"
                )
            else:
                raise self.refuse(operator, f" (in '{excerpt(name)}')")
        return items[0] if len(items) == 1 else And(tuple(items))

    def condition(self, name: str, op: Op, value: Any) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"too many conditions (at most {MAX_CONDITIONS})")
        return Condition(name, op, value)

    def scalar(self, name: str, value: Any) -> Scalar:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(
                f"value of '{excerpt(name)}' must be a string, number or null, not "
                f"{json_type(value)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"value of '{excerpt(name)}' must be a finite number")
        if abs(value) > MAX_INTEGER:
            raise self.fail(
                f"value of '{excerpt(name)}' is out of range (at most {MAX_INTEGER} either way)"
            )
        return value


def json_filter(spec: Any, param: str, fields: Sequence[str] | None = None) -> Node:
    """A MongoDB-style filter already read from JSON, checked as `_filter` checks it: over the
    execution document's fields (the values of a closed set's field among its set), or over
    `fields` (the groups of an `_aggregate` pipeline)."""
    node = _JsonFilter(param, fields).document(spec, 0)
    return node if fields is not None else check_closed_values(node, param)
