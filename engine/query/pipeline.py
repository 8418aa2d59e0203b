"""`_aggregate`: a safe subset of MongoDB's aggregation pipeline, parsed into stages that each
store compiles (`engine.store.sqlite.aggregate`, `engine.store.mongo_query.compile_pipeline`).

```
pipeline := before* ($group | $count) after*
before   := $match | $sort | $skip | $limit                     (over executions)
after    := $match | $sort | $skip | $limit | $project | $count  (over the groups)
```

- `$match` takes the JSON `_filter`'s operators (`engine.query.json_filter.SAFE_OPERATORS`),
  nothing else.
- `$group`: `_id` is null, a field reference `"$status"` (dotted paths reach into `data`:
  `"$data.count"`), or an object of them (`{"name": "$name", "status": "$status"}`, where a
  missing field is left out, as MongoDB does). Accumulators: `{"$sum": 1}` (any whole
  number), `{"$sum": "$f"}` and `{"$avg": "$f"}` (numbers only, others ignored), `{"$min": "$f"}`
  and `{"$max": "$f"}` (MongoDB's order of types: numbers, strings, objects, arrays, booleans;
  null and missing ignored), `{"$first": "$f"}`, `{"$last": "$f"}` (null when missing) and
  `{"$count": {}}`. References into the `phases` array are refused (`_fieldinfo` counts phase
  values).
- `$sort` before the group takes the fields `_sort` takes; after it, the group's fields
  (`_id`, `_id.name`, an accumulator). Ties are broken by `_id`, in the first key's direction;
  the groups come in `_id` order until sorted otherwise.
- `$project` keeps the group fields it names (`{"count": 1, "_id": 0}`).

Documents enter the pipeline in the list call's `_sort` order (newest `start` first by default),
which a `$skip`, `$limit`, `$first` or `$last` before any `$sort` sees.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from procexec.engine.errors import BadRequest, excerpt
from procexec.engine.limits import MAX_DISTINCT
from procexec.engine.query.fields import (
    SORT_FIELDS,
    check_document_field,
    check_sortable,
    sort_keys,
)
from procexec.engine.query.json_filter import MAX_INTEGER, json_filter
from procexec.engine.query.json_input import json_type, load_json
from procexec.engine.query.tree import Node

PARAM = "_aggregate"
#: the stages a pipeline may use, and its accumulators
STAGES = ("$match", "$group", "$sort", "$skip", "$limit", "$count", "$project")
ACCUMULATORS = ("$sum", "$avg", "$min", "$max", "$first", "$last", "$count")
MAX_STAGES = 20
MAX_ACCUMULATORS = 20
#: the largest `$skip` or `$limit`
MAX_STEP = 10**9
#: the name of a group's field, or of a `$count`'s
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Match:
    where: Node


@dataclass(frozen=True)
class Sort:
    #: the keys, ties broken by `_id` (appended when not given)
    keys: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Skip:
    count: int


@dataclass(frozen=True)
class Limit:
    count: int


@dataclass(frozen=True)
class Accumulator:
    """`name: {$op: "$field"}`, or with `field` None `name: {$sum: constant}`."""

    name: str
    op: str  # sum, avg, min, max, first, last
    field: str | None = None
    constant: int = 0


#: a group's `_id`: None (one group), a field path, or `(name, path)` pairs of an object
GroupKey = str | tuple[tuple[str, str], ...] | None


@dataclass(frozen=True)
class Group:
    key: GroupKey
    accumulators: tuple[Accumulator, ...]

    def key_fields(self) -> tuple[str, ...]:
        """The field paths of the key."""
        if self.key is None:
            return ()
        if isinstance(self.key, str):
            return (self.key,)
        return tuple(path for _, path in self.key)

    def fields(self) -> tuple[str, ...]:
        """The field paths the group reads, once each."""
        used = [acc.field for acc in self.accumulators if acc.field is not None]
        return tuple(dict.fromkeys([*self.key_fields(), *used]))


@dataclass(frozen=True)
class Count:
    name: str


@dataclass(frozen=True)
class Project:
    #: the fields kept, in the document's order
    fields: tuple[str, ...]


Before = Match | Sort | Skip | Limit
After = Match | Sort | Skip | Limit | Project | Count


@dataclass(frozen=True)
class Pipeline:
    before: tuple[Before, ...]
    grouping: Group | Count
    after: tuple[After, ...]

    def stages(self) -> tuple[Before | Group | Count | After, ...]:
        return (*self.before, self.grouping, *self.after)

    def with_input_order(self, order: tuple[tuple[str, int], ...]) -> Pipeline:
        """The pipeline fed in `order` (the list's `_sort`) when its result depends on the
        order and no `$sort` of its own sets it first."""
        for stage in self.before:
            if isinstance(stage, Sort):
                return self
            if isinstance(stage, Skip | Limit):
                break
        else:
            if not isinstance(self.grouping, Group) or all(
                acc.op not in ("first", "last") for acc in self.grouping.accumulators
            ):
                return self
        return replace(self, before=(Sort(_with_id(order)), *self.before))


def _with_id(
    keys: tuple[tuple[str, int], ...] | list[tuple[str, int]],
) -> tuple[tuple[str, int], ...]:
    """Sort keys made total: `_id` last, in the first key's direction, unless given."""
    if any(name == "_id" for name, _ in keys):
        return tuple(keys)
    return (*keys, ("_id", keys[0][1]))


def too_many_results() -> BadRequest:
    return _fail(f"more than {MAX_DISTINCT} results; add a $limit or narrow the filters")


def _fail(message: str) -> BadRequest:
    return BadRequest(f"{PARAM}: {message}")


def parse_pipeline(raw: str) -> Pipeline:
    """An `_aggregate` value: a JSON array of stages, or a `BadRequest` saying what is wrong."""
    spec = load_json(PARAM, raw)
    if not isinstance(spec, list):
        raise _fail(
            'expected a JSON array of stages such as [{"$group": {"_id": "$status", '
            f'"count": {{"$sum": 1}}}}}}], not {json_type(spec)}'
        )
    if not spec:
        raise _fail("empty pipeline (it needs a $group or a $count stage)")
    if len(spec) > MAX_STAGES:
        raise _fail(f"too many stages ({len(spec)}, at most {MAX_STAGES})")
    return _Parser().pipeline(spec)


class _Parser:
    def __init__(self) -> None:
        #: the fields of the documents at this point: None before the grouping stage
        self.fields: tuple[str, ...] | None = None
        self.where = ""

    def fail(self, message: str) -> BadRequest:
        return _fail(f"{self.where}: {message}")

    def pipeline(self, spec: list[Any]) -> Pipeline:
        before: list[Before] = []
        after: list[After] = []
        grouping: Group | Count | None = None
        for number, item in enumerate(spec, 1):
            self.where = f"stage {number}"
            if not isinstance(item, dict) or len(item) != 1:
                raise self.fail('a stage is an object with one key, such as {"$match": {…}}')
            ((name, body),) = item.items()
            self.where = f"stage {number} ({excerpt(name)})"
            if name not in STAGES:
                raise _fail(
                    f"stage {number}: '{excerpt(name)}' is not allowed (allowed: "
                    f"{', '.join(STAGES)})"
                )
            if name == "$group" or (name == "$count" and grouping is None):
                if grouping is not None:
                    raise self.fail("only one $group per pipeline")
                grouping = self.group(body) if name == "$group" else self.count(body)
                if isinstance(grouping, Group):  # MongoDB's groups come in no order: in `_id`'s
                    after.append(Sort((("_id", 1),)))
            elif grouping is None:
                if name == "$project":
                    raise self.fail("$project applies to the groups: put it after the $group")
                before.append(self.before(name, body))
            else:
                after.append(self.after(name, body))
        if grouping is None:
            raise _fail(
                "the pipeline needs a $group or a $count stage (the list call itself lists "
                "executions)"
            )
        return Pipeline(tuple(before), grouping, tuple(after))

    def before(self, name: str, body: Any) -> Before:
        stage = self.step(name, body)
        if stage is not None:
            return stage
        if name == "$sort":
            return Sort(_with_id(check_sortable(self.sort_keys(body), self.param, SORT_FIELDS)))
        return Match(json_filter(body, self.param))

    def after(self, name: str, body: Any) -> After:
        assert self.fields is not None
        stage = self.step(name, body)
        if stage is not None:
            return stage
        if name == "$sort":
            keys = self.sort_keys(body)
            for path, _ in keys:
                if path.split(".")[0] not in self.fields:
                    raise self.fail(f"cannot sort by '{excerpt(path)}' ({self.known()})")
            return Sort(_with_id(keys) if "_id" in self.fields else tuple(keys))
        if name == "$project":
            return self.project(body)
        if name == "$count":
            return self.count(body)
        return Match(json_filter(body, self.param, self.fields))

    @property
    def param(self) -> str:
        return f"{PARAM}: {self.where}"

    def known(self) -> str:
        return f"fields here: {', '.join(excerpt(name) for name in self.fields or ())}"

    def step(self, name: str, body: Any) -> Skip | Limit | None:
        if name not in ("$skip", "$limit"):
            return None
        low = 0 if name == "$skip" else 1
        if isinstance(body, bool) or not isinstance(body, int) or not low <= body <= MAX_STEP:
            raise self.fail(f"takes a whole number from {low} to {MAX_STEP}")
        return Skip(body) if name == "$skip" else Limit(body)

    def sort_keys(self, body: Any) -> list[tuple[str, int]]:
        if not isinstance(body, dict) or not body:
            raise self.fail('takes an object of fields and directions, such as {"count": -1}')
        return sort_keys(body, self.param)

    def count(self, body: Any) -> Count:
        if not isinstance(body, str) or not _NAME.match(body):
            raise self.fail('takes the name of its field, such as "total"')
        self.fields = (body,)
        return Count(body)

    def project(self, body: Any) -> Project:
        assert self.fields is not None
        if not isinstance(body, dict) or not body:
            raise self.fail('takes an object of the fields to keep, such as {"count": 1}')
        for name, keep in body.items():
            if name not in self.fields:
                raise self.fail(f"'{excerpt(name)}' is not a field ({self.known()})")
            if keep not in (0, 1) or isinstance(keep, float):
                raise self.fail(f"value of '{excerpt(name)}' must be 1 or 0")
            if not keep and name != "_id":
                raise self.fail(
                    f"only _id can be dropped (keep fields with 1, not '{excerpt(name)}')"
                )
        if not any(body.values()):
            raise self.fail("name at least one field to keep")
        # as MongoDB: `_id` stays unless dropped; the fields stay in the document's order
        self.fields = tuple(name for name in self.fields if body.get(name, name == "_id"))
        return Project(self.fields)

    def group(self, body: Any) -> Group:
        if not isinstance(body, dict) or "_id" not in body:
            raise self.fail('takes an object with an _id, such as {"_id": "$status"}')
        key = self.key(body["_id"])
        accumulators = tuple(
            self.accumulator(name, spec) for name, spec in body.items() if name != "_id"
        )
        if len(accumulators) > MAX_ACCUMULATORS:
            raise self.fail(f"too many accumulators (at most {MAX_ACCUMULATORS})")
        self.fields = ("_id", *(acc.name for acc in accumulators))
        return Group(key, accumulators)

    def key(self, spec: Any) -> GroupKey:
        if spec is None:
            return None
        if isinstance(spec, str) and spec.startswith("$"):
            return self.reference(spec, "_id")
        if isinstance(spec, dict) and spec:
            for name in spec:
                if not _NAME.match(name):
                    raise self.fail(f"'{excerpt(name)}' in _id is not a plain field name")
            return tuple(
                (name, self.reference(value, f"_id.{excerpt(name)}"))
                for name, value in spec.items()
            )
        raise self.fail(
            '_id must be null, a field reference such as "$status", or an object of them '
            'such as {"name": "$name", "status": "$status"}'
        )

    def reference(self, spec: Any, owner: str) -> str:
        """A field reference `"$path"` as its path."""
        if not isinstance(spec, str) or not spec.startswith("$"):
            found = excerpt(json.dumps(spec))
            raise self.fail(f'{owner} takes a field reference such as "$status", not {found}')
        path = check_document_field(spec[1:], self.param)
        parts = path.split(".")
        if parts[0] == "phases":
            raise self.fail(
                f"'{excerpt(spec)}' reaches into the phases array, which $group does not (count "
                f"phase "
                f"values with _fieldinfo={excerpt(path)})"
            )
        if any(part.isdigit() for part in parts):
            raise self.fail(
                f"'{excerpt(spec)}': array positions are not supported in a field reference"
            )
        return path

    def accumulator(self, name: str, spec: Any) -> Accumulator:
        if not _NAME.match(name):
            raise self.fail(f"'{excerpt(name)}' is not a plain field name (letters, digits and _)")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise self.fail(f"'{excerpt(name)}' takes one accumulator, such as {{\"$sum\": 1}}")
        ((operator, argument),) = spec.items()
        if operator not in ACCUMULATORS:
            raise self.fail(
                f"accumulator '{excerpt(operator)}' is not allowed (allowed: "
                f"{', '.join(ACCUMULATORS)})"
            )
        if operator == "$count":
            if argument != {}:
                raise self.fail(f"'$count' of '{excerpt(name)}' takes {{}}")
            return Accumulator(name, "sum", constant=1)
        if operator == "$sum" and not isinstance(argument, str):
            if isinstance(argument, bool) or not isinstance(argument, int | float):
                raise self.fail(
                    f"'$sum' of '{excerpt(name)}' takes a whole number or a field reference"
                )
            if isinstance(argument, float) and not (
                math.isfinite(argument) and argument.is_integer()
            ):
                raise self.fail(
                    f"'$sum' of '{excerpt(name)}' takes a whole number or a field reference"
                )
            if abs(argument) > MAX_INTEGER:
                raise self.fail(f"'$sum' of '{excerpt(name)}' is out of range")
            return Accumulator(name, "sum", constant=int(argument))
        return Accumulator(
            name,
            operator[1:],
            self.reference(argument, f"'{excerpt(operator)}' of '{excerpt(name)}'"),
        )
