"""Documents as MongoDB sees them, for the stores that compute in Python what MongoDB computes:
how values order (`distinct_key`) and which are one (`sorted_distinct`), `_fieldinfo`'s buckets
(`field_buckets`), the values at a path through arrays (`values_at`), and projections
(`project_document`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from procexec.engine import deadline
from procexec.engine.errors import BadRequest
from procexec.engine.limits import MAX_DISTINCT


def distinct_key(value: Any) -> tuple[Any, ...]:
    """Orders JSON values as MongoDB compares them: null, numbers, strings, objects (element by
    element: the value's type, the name, the value), arrays (item by item), booleans."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (5, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, dict):
        keys = ((name, distinct_key(item)) for name, item in value.items())
        return (3, tuple((key[0], name, key) for name, key in keys))
    if isinstance(value, list):
        return (4, tuple(distinct_key(item) for item in value))
    return (6, repr(value))


def _identity(value: Any) -> Any:
    """What makes two values one: `7` and `7.0` are one value, `1` and `true` two."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return (type(value) is bool, value)


def sorted_distinct(values: Iterable[Any], field: str | None = None) -> list[Any]:
    """Distinct values, once each, in `distinct_key` order; `None` (absent) is left out.

    With `field`, more than `MAX_DISTINCT` values is a `BadRequest` (`too_many_values`) as soon
    as they are met, not once all are held. The read's deadline is looked at as they come."""
    seen: dict[Any, Any] = {}
    for value in deadline.checked(values):
        if value is not None:
            seen.setdefault(_identity(value), value)
            if field is not None and len(seen) > MAX_DISTINCT:
                raise too_many_values("_distinct", field)
    deadline.check()
    return sorted(seen.values(), key=distinct_key)


def too_many_values(param: str, field: str) -> BadRequest:
    return BadRequest(
        f"{param}: more than {MAX_DISTINCT} distinct values of '{field}'; narrow the filters"
    )


def field_buckets(field: str, counted: Iterable[tuple[Any, int]]) -> list[dict[str, Any]]:
    """The `_fieldinfo` answer: each value of `field`, how many executions hold it, and the
    filter that selects them (`{field: value}`); most held first, then in `distinct_key` order.

    `counted` pairs a value with how many executions hold it; an array stands for each of its
    distinct items (the values `values_at` finds in one execution), so that an execution counts
    once for each distinct value it holds. Null is left out. More than `MAX_DISTINCT` values
    is a `BadRequest`.
    """
    buckets: dict[Any, list[Any]] = {}
    for value, count in deadline.checked(counted):
        items = value if isinstance(value, list) else [value]
        for key, item in {_identity(item): item for item in items if item is not None}.items():
            buckets.setdefault(key, [item, 0])[1] += count
        if len(buckets) > MAX_DISTINCT:
            raise too_many_values("_fieldinfo", field)
    deadline.check()
    ordered = sorted(buckets.values(), key=lambda bucket: (-bucket[1], distinct_key(bucket[0])))
    return [{"_id": value, "count": count, "filter": {field: value}} for value, count in ordered]


def values_at(doc: Any, parts: Sequence[str]) -> list[Any]:
    """The values at a path, as MongoDB's distinct sees them: through arrays, arrays unwound."""
    current = [doc]
    for part in parts:
        found = []
        for value in current:
            if isinstance(value, dict):
                if part in value:
                    found.append(value[part])
            elif isinstance(value, list):
                found.extend(
                    item[part] for item in value if isinstance(item, dict) and part in item
                )
        current = found
    values: list[Any] = []
    for value in current:
        values.extend(value) if isinstance(value, list) else values.append(value)
    return values


def project_document(
    doc: dict[str, Any],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A document as MongoDB projects it, for stores that project in Python.

    `include` keeps `_id` and the named (possibly dotted) fields; `exclude` drops the named
    fields. A dotted path reaches into every element of an array of sub-documents
    (`phases.name`, `phases.log`); fields stay in the document's order.
    """
    if include:
        return _pick(doc, _tree(["_id", *include]))
    if exclude:
        return _omit(doc, _tree(exclude))
    return doc


def _tree(fields: Iterable[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name in fields:
        node = tree
        *parents, last = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if child is True:
                break
            node = child
        else:
            node[last] = True
    return tree


def _pick(doc: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in doc.items():
        spec = tree.get(key)
        if spec is None:
            continue
        if spec is True:
            result[key] = value
        elif isinstance(value, dict):
            result[key] = _pick(value, spec)
        elif isinstance(value, list):
            result[key] = [_pick(item, spec) for item in value if isinstance(item, dict)]
    return result


def _omit(doc: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in doc.items():
        spec = tree.get(key)
        if spec is True:
            continue
        if spec is None:
            result[key] = value
        elif isinstance(value, dict):
            result[key] = _omit(value, spec)
        elif isinstance(value, list):
            result[key] = [_omit(item, spec) if isinstance(item, dict) else item for item in value]
        else:
            result[key] = value
    return result
