"""The list call on SQLite: a page of stored documents and the total, read in one snapshot.

- A search the full-text index answers alone is asked for its matches first: a few
  (`SMALL_SEARCH`) are listed, then read and sorted; more are counted, and kept while the
  list's index is walked in order, so the first page comes without reading every match.
- A total over filters on `name`/`status` only is a sum over a few rows of the counters
  (`schema`) instead of a count over an index.
- A deep `_skip` in `start` order jumps to the right month, then day, before it skips row by
  row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from procexec.engine.answers import gathered
from procexec.engine.query import Query
from procexec.engine.store.base import InlineBudgetExceeded
from procexec.engine.store.sqlite.compiler import (
    counter_where,
    expression,
    listed_where_clause,
    order_sql,
)
from procexec.engine.store.sqlite.search import FTS_SOURCE, search_match

#: a `_skip` at least this deep in `start` order first jumps to its day
DEEP_SKIP = 1000
#: a search with at most this many matches is answered from its matches (each read and
#: sorted); a broader one by walking the list's index in order, keeping the matches
SMALL_SEARCH = 1000


def _order(query: Query) -> list[tuple[str, int]]:
    keys = list(query.sort)
    if all(name != "_id" for name, _ in keys):
        keys.append(("_id", query.sort[0][1]))  # a deterministic order among equals
    return keys


def count(conn: sqlite3.Connection, query: Query, listed: str | None = None) -> int:
    """How many executions the query selects: from the counters when they can say it.
    `listed`: as for `listed_where_clause`."""
    for table, columns in (
        ("execution_totals", frozenset({"status"})),
        ("execution_counts", frozenset({"name", "status"})),
    ):
        counted = counter_where(query, columns)
        if counted is not None:
            sql, params = counted
            row = conn.execute(f"SELECT coalesce(sum(n), 0) FROM {table} WHERE {sql}", params)
            return int(row.fetchone()[0])
    sql, params = listed_where_clause(query, listed)
    source = _source(listed is not None)
    return int(conn.execute(f"SELECT count(*) FROM {source} WHERE {sql}", params).fetchone()[0])


def _deep_skip(conn: sqlite3.Connection, query: Query) -> tuple[str, list[Any], int] | None:
    """For a deep `_skip` in `start` order: a bound on `start` and the skip left after it.

    The month counters say how many rows lie in the months before the one where the page
    starts, the day counters of that month how many on its days before the page's day; the
    page is then found by skipping only within that day.
    """
    keys = _order(query)
    direction = keys[0][1]
    if query.skip < DEEP_SKIP or [name for name, _ in keys] != ["start", "_id"]:
        return None
    if keys[1][1] != direction:
        return None
    counted = counter_where(query, frozenset({"status"}))
    if counted is None:
        return None
    sql, params = counted
    if conn.execute(
        f"SELECT 1 FROM execution_months WHERE {sql} AND month IS NULL AND n != 0 LIMIT 1",
        params,
    ).fetchone():
        return None  # some start is not an ISO timestamp: no day to jump to
    order = "DESC" if direction < 0 else "ASC"
    # the months in the list's order (the covering index walks them so), until the page's
    # month; then that month's days, until the page's day
    month, before = _reach(
        conn,
        f"SELECT month, sum(n) FROM execution_months WHERE {sql} AND month IS NOT NULL "
        f"GROUP BY month ORDER BY month {order}",
        params,
        query.skip,
    )
    if month is None:
        return "0", [], 0  # past the end
    day, before_day = _reach(
        conn,
        f"SELECT day, sum(n) FROM execution_days WHERE {sql} AND day > ? AND day < ? "
        f"GROUP BY day ORDER BY day {order}",
        [*params, month, month + "~"],  # 'YYYY-MM' < 'YYYY-MM-DD' < 'YYYY-MM~'
        query.skip - before,
    )
    if day is None:  # the counters disagree (cannot happen: triggers keep them in one step)
        return None
    skip = query.skip - before - before_day
    if direction < 0:  # later days come first: the page starts on or before its day
        return "executions.start < ?", [day + "U"], skip
    return "executions.start >= ?", [day], skip


def _reach(
    conn: sqlite3.Connection, sql: str, params: list[Any], skip: int
) -> tuple[str | None, int]:
    """The first period (of a statement's `(period, n)` rows, in order) on which `skip` rows
    end, and how many rows lie before it; None when they end before `skip`."""
    before = 0
    for period, n in conn.execute(sql, params):
        if before + n > skip:
            return period, before
        before += n
    return None, before


#: what a page's reader makes of each stored document (a projection), when not the document
Shape = Callable[[bytes], bytes]


def bytes_under(most: int, shape: Shape | None) -> Shape:
    """`shape` (or the document as it is), giving up with `InlineBudgetExceeded` once the
    documents read pass `most` bytes."""
    read = 0

    def counted(stored: bytes) -> bytes:
        nonlocal read
        read += len(stored)
        if read > most:
            raise InlineBudgetExceeded
        return stored if shape is None else shape(stored)

    return counted


def page(
    conn: sqlite3.Connection, query: Query, listed: str | None = None, shape: Shape | None = None
) -> list[bytes]:
    """The documents of the page, as stored JSON (UTF-8 bytes: nothing decodes them), in order,
    or as `shape` makes each; fetched one by one and counted against the answer's limit
    (`engine.answers.gathered`), which stops the read at the first one past it.

    Rows skipped by `OFFSET` cost an index step each, not a document read (SQLite defers the
    table lookup); a deep skip in `start` order first jumps to its day (`_deep_skip`).
    `listed`: as for `listed_where_clause`.
    """
    if query.limit == 0:
        return []
    jump = _deep_skip(conn, query) if query.skip >= DEEP_SKIP else None
    if jump is None:
        sql, params = _page_statement(query, listed)
    else:
        bound, bound_params, skip = jump
        where, where_params = listed_where_clause(query, listed)
        sql = (
            f"SELECT CAST(executions.doc AS BLOB) FROM {_source(listed is not None)} "
            f"WHERE {where} AND {bound} ORDER BY {order_sql(_order(query))} LIMIT ? OFFSET ?"
        )
        params = (*where_params, *bound_params, query.limit, skip)
    return gathered((row[0] for row in conn.execute(sql, params)), shape)


def _page_statement(query: Query, listed: str | None) -> tuple[str, tuple[Any, ...]]:
    """The page's statement and its parameters, remembered in the query (a page off an index
    takes a few microseconds: building its SQL again each time would be most of it).

    When a search's matches are listed, each is read and sorted: the sort then
    carries only the matches' keys, and the page's documents are read after it (sorting the
    documents themselves costs half as much again)."""
    key = ("page", listed is not None)
    statement: tuple[str, tuple[Any, ...]] | None = query.compiled.get(key)
    if statement is None:
        where, params = listed_where_clause(query, listed)
        keys = _order(query)
        if listed is None:
            sql = (
                f"SELECT CAST(executions.doc AS BLOB) FROM executions WHERE {where} "
                f"ORDER BY {order_sql(keys)} LIMIT ? OFFSET ?"
            )
        else:
            columns = ", ".join(f"{expression(name)} AS k{n}" for n, (name, _) in enumerate(keys))
            order = ", ".join(
                f"p.k{n} {'DESC' if direction < 0 else 'ASC'}"
                for n, (_, direction) in enumerate(keys)
            )
            sql = (
                f"SELECT CAST(e.doc AS BLOB) FROM (SELECT executions.rowid AS r, {columns} "
                f"FROM {_source(listed is not None)} WHERE {where} "
                f"ORDER BY {order_sql(keys)} LIMIT ? OFFSET ?) "
                f"AS p CROSS JOIN executions AS e ON e.rowid = p.r ORDER BY {order}"
            )
        statement = query.compiled[key] = (sql, (*params, query.limit, query.skip))
    if listed is not None:  # the matches of this call, in place of the last call's
        values = statement[1]
        return statement[0], (*values[:-3], listed, *values[-2:])
    return statement


def _source(listed: bool) -> str:
    """The table a list statement reads: with its rows listed, through their rowids alone (no
    index: SQLite would rather walk an index of a filter's, `status`, through every row)."""
    return "executions NOT INDEXED" if listed else "executions"


def list_page(
    conn: sqlite3.Connection, query: Query, shape: Shape | None = None
) -> tuple[list[bytes], int]:
    """The page as stored JSON (UTF-8 bytes) or as `shape` makes each document (`page`), and
    the total, read in one snapshot.

    A search the FTS index answers alone is asked once for up to `SMALL_SEARCH` + 1 matches:
    when it has no more, they are listed for the page and the count (the index is not asked
    again); a broader one is counted in the index, and its page comes from walking the list's
    index in order."""
    conn.execute("BEGIN")
    try:
        matches: int | None = None
        listed: str | None = None
        match = None if query.search is None else search_match(conn, query)
        if match is not None:
            found, rowids = conn.execute(
                f"SELECT count(*), json_group_array(rowid) FROM ({FTS_SOURCE} LIMIT ?)",
                [match, SMALL_SEARCH + 1],
            ).fetchone()
            if found <= SMALL_SEARCH:
                matches, listed = found, rowids
            else:
                sql = f"SELECT count(*) FROM ({FTS_SOURCE})"
                matches = int(conn.execute(sql, [match]).fetchone()[0])
        if matches is not None and query.where is None:
            total = matches
        elif query.skip == 0 and query.limit > 0:
            # the first page, read first: when it is not full, it is the whole answer
            docs = page(conn, query, listed, shape)
            if len(docs) < query.limit:
                return docs, len(docs)
            return docs, count(conn, query, listed)
        else:
            total = count(conn, query, listed)
        return (page(conn, query, listed, shape) if total > query.skip else []), total
    finally:
        conn.execute("COMMIT")
