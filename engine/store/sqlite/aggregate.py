"""`_aggregate` on SQLite: a pipeline (`engine.query.pipeline`) compiled to one SQL statement,
a chain of common table expressions, one (or two) per stage.

- Before the grouping stage the rows are executions: a `$match` joins the WHERE clause (compiled
  as the list compiles its filters, indexes and all), a `$sort` sets the order, a `$skip` or a
  `$limit` cuts the rows in that order.
- `$group` reads each field it names as JSON text, as MongoDB evaluates a field path (`value`),
  groups the rows by each key's type and value, and writes each group as a JSON document.
- After it the rows are `(doc, n)`: a document and its place. A `$match` compiles against
  `doc`, a `$sort` numbers the rows again, a `$project` rebuilds `doc`.

Values are ordered as MongoDB orders them (null, numbers, strings, objects, arrays, booleans):
scalars by SQLite itself, objects and arrays by the `bson` collation (`compare_json`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from procexec.engine import deadline
from procexec.engine.limits import MAX_DISTINCT
from procexec.engine.query import Condition, Not, Query, distinct_key
from procexec.engine.query.pipeline import (
    Accumulator,
    After,
    Before,
    Group,
    Limit,
    Match,
    Pipeline,
    Project,
    Skip,
    Sort,
    too_many_results,
)
from procexec.engine.store.sqlite.compiler import (
    Clause,
    Compiler,
    counter_where,
    json_path,
    order_sql,
    where_clause,
)

#: the name of the collation that orders JSON texts as MongoDB orders their values
COLLATION = "bson"


@functools.lru_cache(maxsize=4096)
def _order_key(text: str) -> tuple[Any, ...]:
    return distinct_key(json.loads(text))


def compare_json(left: str, right: str) -> int:
    """The `bson` collation: two JSON texts in MongoDB's order of their values."""
    a, b = _order_key(left), _order_key(right)
    return (a > b) - (a < b)


def value(source: str, path: str) -> str:
    """The value at `path` in the JSON `source`, as JSON text (NULL when missing), as MongoDB
    evaluates `"$a.b"`: through an object, its field; through an array, the array of what each
    object in it holds (`[]` when none does)."""
    return _value(source, path.split("."), 0)


def _value(source: str, parts: Sequence[str], depth: int) -> str:
    step = json_path(parts[:1])
    if len(parts) == 1:
        return f"({source} -> '{step}')"
    item = f"a{depth}"
    nested = _value(f"({source} -> '{step}')", parts[1:], depth + 1)
    each = _value(f"{item}.value", parts[1:], depth + 1)
    return (
        f"(CASE json_type({source}, '{step}') WHEN 'object' THEN {nested} "
        f"WHEN 'array' THEN (SELECT json_group_array(json(x)) FROM (SELECT {each} AS x "
        f"FROM json_each({source}, '{step}') AS {item} WHERE {item}.type = 'object') "
        "WHERE x IS NOT NULL) END)"
    )


def _json(value: str) -> str:
    """A SQL value as JSON text, a real with all its digits (`json_quote` keeps 15)."""
    return (
        f"(CASE typeof({value}) WHEN 'real' THEN printf('%!.17g', {value}) "
        f"ELSE json_quote({value}) END)"
    )


def _rank(value: str) -> str:
    """A JSON value's type in MongoDB's order: 0 null or missing, 1 number, 2 string, 3 object,
    4 array, 5 boolean."""
    return (
        f"(CASE json_type({value}) WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 "
        "WHEN 'object' THEN 3 WHEN 'array' THEN 4 WHEN 'true' THEN 5 WHEN 'false' THEN 5 "
        "ELSE 0 END)"
    )


def _compare(value: str) -> list[str]:
    """Sort keys of a JSON value: its type, then a scalar natively, else by `bson`."""
    rank = _rank(value)
    return [
        rank,
        f"(CASE WHEN {rank} IN (1, 2, 5) THEN {value} ->> '$' END)",
        f"(CASE WHEN {rank} IN (3, 4) THEN {value} END) COLLATE {COLLATION}",
    ]


def _sort_value(value: str, direction: int) -> str:
    """What MongoDB's `$sort` compares of a JSON value: an array's least item (its greatest,
    descending; NULL when it is empty, and a term of its own puts it before null)."""
    way = " DESC" if direction < 0 else ""
    # the item as JSON text (an ORDER BY in a subquery cannot read the outer `value`)
    item = (
        "(CASE i.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
        f"WHEN 'object' THEN i.value WHEN 'array' THEN i.value ELSE {_json('i.value')} END)"
    )
    least = ", ".join(key + way for key in _compare(item))
    return (
        f"(CASE WHEN json_type({value}) = 'array' THEN (SELECT {item} FROM json_each({value}) "
        f"AS i ORDER BY {least} LIMIT 1) ELSE {value} END)"
    )


def _object(fields: Sequence[tuple[str, str]]) -> str:
    """A JSON object of named JSON texts; a NULL one (missing) is left out, as MongoDB does."""
    pairs = ", ".join(f"'{name}', json(coalesce({text}, 'null'))" for name, text in fields)
    missing = ", ".join(
        f"CASE WHEN {text} IS NULL THEN '{json_path([name])}' ELSE '$.\"$\"' END"
        for name, text in fields
    )
    return f"json_remove(json_object({pairs}), {missing})"


class _DocumentCompiler(Compiler):
    """A `$match` after the group: conditions on the group's document `doc`."""

    def condition(self, cond: Condition) -> str:
        if cond.op == "ne":
            return self.node(Not(Condition(cond.field, "eq", cond.value)))
        parts = cond.field.split(".")
        return self._path("doc", json_path(parts[:1]), parts[1:], cond)


class _Statement:
    """The pipeline's statement, table by table; parameters in the order of the SQL text."""

    def __init__(self, query: Query, counted: Clause | None = None) -> None:
        where, self.params = where_clause(query)
        #: the filter over the counters (`execution_counts`), when the group may come from them
        self.counted = counted
        self.tables: list[str] = []
        #: the rows so far, and (before the grouping stage) their condition and order
        self.source = "executions"
        self.where = [where]
        self.order = ""

    def add(self, select: str) -> None:
        # materialized: a table's values are computed once a row, not once a reference (a
        # value read from the document parses the whole document; 17x faster at 100k rows)
        self.source = f"s{len(self.tables) + 1}"
        self.tables.append(f"{self.source} AS MATERIALIZED ({select})")

    def executions(self) -> str:
        return f"FROM {self.source} AS executions WHERE {' AND '.join(self.where)}"

    def sql(self, pipeline: Pipeline) -> str:
        for stage in pipeline.before:
            self.before(stage)
        if isinstance(pipeline.grouping, Group):
            self.group(pipeline.grouping)
        else:
            self.count(pipeline.grouping.name, self.executions())
        for step in pipeline.after:
            self.after(step)
        return (
            f"WITH {', '.join(self.tables)} "
            f"SELECT doc FROM {self.source} ORDER BY n LIMIT {MAX_DISTINCT + 1}"
        )

    def before(self, stage: Before) -> None:
        if isinstance(stage, Match):
            compiler = Compiler()
            self.where.append(compiler.node(stage.where))
            self.params.extend(compiler.params)
        elif isinstance(stage, Sort):
            self.order = order_sql(stage.keys)
        else:
            assert self.order, "a pipeline is fed in order (Pipeline.with_input_order)"
            self.add(f"SELECT * {self.executions()} ORDER BY {self.order} {_cut(stage)}")
            self.where = ["1"]

    def count(self, name: str, rows: str) -> None:
        self.add(f"SELECT json_object('{name}', count(*)) AS doc, 0 AS n {rows} HAVING count(*)")

    def group(self, group: Group) -> None:
        if self.counted is not None:
            self.counted_group(group, *self.counted)
            return
        column = {path: f"v{number}" for number, path in enumerate(group.fields())}
        ordered = any(acc.op in ("first", "last") for acc in group.accumulators)
        values = [f"{value('executions.doc', path)} AS {name}" for path, name in column.items()]
        if ordered:
            values.append(f"row_number() OVER (ORDER BY {self.order}) AS n")
        self.add(f"SELECT {', '.join(values) or '1'} {self.executions()}")
        keys = [column[path] for path in group.key_fields()]
        # missing and null are one key, but two in an object key (where missing is left out)
        terms = [
            term
            for key in keys
            for term in (
                ([f"{key} IS NULL"] if isinstance(group.key, tuple) else [])
                + [_rank(key), f"{key} ->> '$'"]
            )
        ]
        if ordered:
            partition = f"PARTITION BY {', '.join(terms)} " if terms else ""
            windows = [
                f"first_value({column[acc.field]}) OVER ({partition}ORDER BY n"
                f"{' DESC' if acc.op == 'last' else ''}) AS w{number}"
                for number, acc in enumerate(group.accumulators)
                if acc.field is not None and acc.op in ("first", "last")
            ]
            self.add(f"SELECT *, {', '.join(windows)} FROM {self.source}")
        if group.key is None:
            key = "'null'"
        elif isinstance(group.key, str):
            key = f"coalesce({keys[0]}, 'null')"
        else:
            key = _object([(name, column[path]) for name, path in group.key])
        fields = [("_id", key)] + [
            (acc.name, _accumulate(acc, column, number))
            for number, acc in enumerate(group.accumulators)
        ]
        # one group of all rows when the key is null: none when there are no rows, as MongoDB
        grouping = ", ".join(terms) or "NULL"
        self.add(f"SELECT {_object(fields)} AS doc, 0 AS n FROM {self.source} GROUP BY {grouping}")

    def counted_group(self, group: Group, where: str, params: list[Any]) -> None:
        """A group that only counts, by `name` or `status` or as one group, from the counters
        (`countable`): a sum over a few rows instead of a pass over every document."""
        key = group.key if isinstance(group.key, str) else None
        fields = [("_id", f"coalesce(json_quote({key}), 'null')" if key else "'null'")] + [
            (acc.name, f"(sum(n) * {acc.constant})") for acc in group.accumulators
        ]
        self.params = list(params)
        self.add(
            f"SELECT {_object(fields)} AS doc, 0 AS n FROM execution_counts WHERE {where} "
            f"GROUP BY {key or 'NULL'} HAVING sum(n) > 0"
        )

    def after(self, stage: After) -> None:
        if isinstance(stage, Match):
            compiler = _DocumentCompiler()
            self.add(f"SELECT doc, n FROM {self.source} WHERE {compiler.node(stage.where)}")
            self.params.extend(compiler.params)
        elif isinstance(stage, Sort):
            # the sort values as columns first: a window cannot hold `_sort_value`'s subquery
            columns = ", ".join(
                f"({text} IS NOT '[]') AS e{number}, {_sort_value(text, way)} AS k{number}"
                for number, (text, way) in enumerate(
                    (value("doc", path), way) for path, way in stage.keys
                )
            )
            order = ", ".join(
                term + (" DESC" if way < 0 else "")
                for number, (_, way) in enumerate(stage.keys)
                for term in (f"e{number}", *_compare(f"k{number}"))
            )
            self.add(f"SELECT doc, n, {columns} FROM {self.source}")
            self.add(f"SELECT doc, row_number() OVER (ORDER BY {order}, n) AS n FROM {self.source}")
        elif isinstance(stage, Skip | Limit):
            self.add(f"SELECT doc, n FROM {self.source} ORDER BY n {_cut(stage)}")
        elif isinstance(stage, Project):
            kept = _object([(name, value("doc", name)) for name in stage.fields])
            self.add(f"SELECT {kept} AS doc, n FROM {self.source}")
        else:
            self.count(stage.name, f"FROM {self.source}")


def _cut(stage: Skip | Limit) -> str:
    if isinstance(stage, Limit):
        return f"LIMIT {stage.count}"
    return f"LIMIT -1 OFFSET {stage.count}"


def _accumulate(acc: Accumulator, column: dict[str, str], number: int) -> str:
    """An accumulator over the rows of a group, as JSON text."""
    if acc.field is None:
        return f"(count(*) * {acc.constant})"  # a whole number: its text is JSON
    if acc.op in ("first", "last"):
        return f"coalesce(max(w{number}), 'null')"  # one value in the whole group
    text = column[acc.field]
    rank, scalar = _rank(text), f"({text} ->> '$')"
    if acc.op == "sum":
        return _json(f"coalesce(sum({scalar}) FILTER (WHERE {rank} = 1), 0)")
    if acc.op == "avg":
        return _json(f"avg({scalar}) FILTER (WHERE {rank} = 1)")
    # $min, $max: the least (greatest) type that holds a value, then its least (greatest) value
    function = acc.op
    by_type = [
        f"nullif({_json(f'{function}({scalar}) FILTER (WHERE {rank} = 1)')}, 'null')",
        f"nullif(json_quote({function}({scalar}) FILTER (WHERE {rank} = 2)), 'null')",
        f"{function}({text} COLLATE {COLLATION}) FILTER (WHERE {rank} IN (3, 4))",
        f"CASE {function}({scalar}) FILTER (WHERE {rank} = 5) "
        "WHEN 1 THEN 'true' WHEN 0 THEN 'false' END",
    ]
    if function == "max":
        by_type.reverse()
    return f"coalesce({', '.join(by_type)}, 'null')"


def countable(query: Query) -> Clause | None:
    """The filter over the counters when the pipeline's group may come from them: the group
    comes first, only counts (`{"$sum": 1}`, `{"$count": {}}`), by `name`, `status` or
    nothing, and the query's filters are on `name` and `status` only.

    The counters hold those fields as text, as the service writes them (a process name, a
    status); a document written around the service with, say, `"status": true` would be
    counted here under `"1"`, where MongoDB (and the general plan) keep `true`."""
    pipeline = query.aggregate
    assert pipeline is not None
    group = pipeline.grouping
    if (
        pipeline.before
        or not isinstance(group, Group)
        or group.key not in (None, "name", "status")
        or any(acc.field is not None for acc in group.accumulators)
    ):
        return None
    return counter_where(query, frozenset({"name", "status"}))


def aggregate(conn: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    """The results of `query.aggregate` over the executions `query` selects."""
    assert query.aggregate is not None
    statement = _Statement(query, countable(query))
    sql = statement.sql(query.aggregate)
    rows = conn.execute(sql, statement.params).fetchall()
    if len(rows) > MAX_DISTINCT:
        raise too_many_results()
    return [json.loads(doc) for (doc,) in deadline.checked(rows)]
