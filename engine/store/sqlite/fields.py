"""`_distinct` and `_fieldinfo` on SQLite: the values of one field among the executions a query
selects (each counted, for `_fieldinfo`), from the counters when the filters allow it, else from
an indexed column, else from the documents; more than `MAX_DISTINCT` values are refused."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from procexec.engine import answers
from procexec.engine.limits import MAX_DISTINCT
from procexec.engine.query import Query, field_buckets, sorted_distinct, too_many_values, values_at
from procexec.engine.store.sqlite.compiler import counter_where, expression, json_path, where_clause
from procexec.engine.store.sqlite.schema import COLUMNS


def _json_value(kind: str, value: Any) -> Any:
    if kind in ("object", "array"):
        answers.fits(len(value))  # under an API answer's limit, before it is parsed
        return json.loads(value)
    return {"true": True, "false": False, "null": None}.get(kind, value)


def _distinct_column(
    conn: sqlite3.Connection, field: str, table: str, where: str, params: list[Any]
) -> list[Any]:
    """The distinct non-null values of an indexed column, refused past `MAX_DISTINCT`."""
    column = expression(field) if table == "executions" else field
    rows = conn.execute(
        f"SELECT DISTINCT {column} FROM {table} WHERE {where} AND {column} IS NOT NULL LIMIT ?",
        [*params, MAX_DISTINCT + 1],
    ).fetchall()
    if len(rows) > MAX_DISTINCT:
        raise too_many_values("_distinct", field)
    return sorted_distinct(row[0] for row in rows)


def distinct(conn: sqlite3.Connection, query: Query) -> list[Any]:
    """The distinct values of `query.distinct` among the executions `query` selects."""
    field = query.distinct
    assert field is not None
    conn.execute("BEGIN")
    try:
        if field in ("name", "status"):
            counted = counter_where(query, frozenset({"name", "status"}))
            if counted is not None:
                sql, params = counted
                return _distinct_column(conn, field, "execution_counts", f"{sql} AND n > 0", params)
        where, params = where_clause(query)
        if field == "_id" or field in COLUMNS:
            return _distinct_column(conn, field, "executions", where, params)
        found = _path_values(conn, field, where, params)
        return sorted_distinct((value for values in found for value in values), field)
    finally:
        conn.execute("COMMIT")


def _path_values(
    conn: sqlite3.Connection, field: str, where: str, params: list[Any]
) -> Iterator[list[Any]]:
    """For each execution the WHERE clause selects, the values at `field` (`values_at`)."""
    parts = field.split(".")
    first = json_path(parts[:1])
    for kind, value in conn.execute(
        f"SELECT json_type(doc, '{first}'), json_extract(doc, '{first}') FROM executions "
        f"WHERE {where} AND json_type(doc, '{first}') IS NOT NULL",
        params,
    ):
        yield values_at({parts[0]: _json_value(kind, value)}, parts)


def _column_counts(
    conn: sqlite3.Connection, column: str, table: str, where: str, params: list[Any], count: str
) -> list[tuple[Any, int]]:
    """The non-null values of an indexed column, each with how many executions hold it (one
    more than `MAX_DISTINCT` at most: `field_buckets` refuses that many)."""
    return conn.execute(
        f"SELECT {column}, {count} FROM {table} WHERE {where} AND {column} IS NOT NULL "
        f"GROUP BY {column} HAVING {count} > 0 LIMIT ?",
        [*params, MAX_DISTINCT + 1],
    ).fetchall()


def fieldinfo(conn: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    """`_fieldinfo`: the values of `query.fieldinfo` among the executions `query` selects,
    counted (`field_buckets`): from the counters, an index, or the documents."""
    field = query.fieldinfo
    assert field is not None
    conn.execute("BEGIN")
    try:
        counters = (
            counter_where(query, frozenset({"name", "status"}))
            if field in ("name", "status")
            else None
        )
        if counters is not None:
            sql, params = counters
            return field_buckets(
                field, _column_counts(conn, field, "execution_counts", sql, params, "sum(n)")
            )
        where, params = where_clause(query)
        if field == "_id" or field in COLUMNS:
            return field_buckets(
                field,
                _column_counts(conn, expression(field), "executions", where, params, "count(*)"),
            )
        return field_buckets(
            field, ((values, 1) for values in _path_values(conn, field, where, params))
        )
    finally:
        conn.execute("COMMIT")
