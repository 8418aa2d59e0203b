"""The list call on SQLite: a `Query` compiled to SQL, served by indexes, FTS5 and counters.

- Filters: top-level fields with a generated column (`COLUMNS`) compare that column, so the
  indexes serve them; every other path is read from the JSON document with MongoDB's meaning
  (a path through an array matches when any element does; comparisons hold within one type).
- `_search`: an FTS5 table (`executions_fts`, contentless, one row per execution) holds the
  words of `_id`, `name`, `message`, `reason` and every log line (a line-break token keeps
  phrases within a line), and the environment as a token. Triggers on `executions` keep it in
  step with every insert, update and delete, in the writer's transaction. The index is asked
  for the matches first: a few (`SMALL_SEARCH`) are listed, then read and sorted; more are
  counted, and kept while the list's index is walked in order, so the first page comes
  without reading every match.
- Totals: `execution_totals` (per environment and status), `execution_counts` (per
  environment, name and status), `execution_months` and `execution_days` (per environment,
  status and month or day of `start`) are kept by triggers as well. A total over filters
  on `name`/`status` only is a sum over a few rows instead of a count over an index, and a
  deep `_skip` in `start` order jumps to the right month, then day, before it skips row by
  row.
- Reads of one call run in one transaction: the total and the page are of one snapshot.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from procexec.engine.limits import MAX_DISTINCT
from procexec.engine.query import (
    And,
    Condition,
    Node,
    Not,
    Or,
    Query,
    field_buckets,
    sorted_distinct,
    too_many_values,
    values_at,
)
from procexec.engine.search import AllOf, AnyOf, NoneOf, SearchNode, Term

#: top-level fields copied into generated columns, so that filters and sorts use indexes
COLUMNS = {
    "environment": "environment",
    "name": "name",
    "status": "status",
    "start": "start",
    "end": "end_",
    "service": "service",
    "trigger": "trigger_",
    "runAs": "run_as",
}
#: a `_skip` at least this deep in `start` order first jumps to its day
DEEP_SKIP = 1000

#: a call under `SQLiteStore.inline()` gives up after INLINE_SECONDS, checked every INLINE_STEP
#: virtual machine steps; a page of a hundred documents on an index takes a fraction of it
INLINE_SECONDS = 0.002
INLINE_STEP = 1000

#: separates two log lines in the FTS index, so that no phrase runs across them; a token
#: character of the index (and of no query: queries are letters and digits only)
_LINE_BREAK = "\ue000"
_ISO_DAY = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*"


def _texts(row: str) -> str:
    """The FTS columns of an execution row (`NEW`/`OLD`/a table), as SQL: the five searched
    texts, and the environment as one token (`e` and its hex) that restricts a search to it."""
    doc = f"{row}.doc"

    def clean(expr: str) -> str:
        return f"replace({expr}, char(57344), ' ')"

    log = (
        f"(SELECT group_concat({clean('l.value')}, ' ' || char(57344) || ' ') "
        f"FROM json_each({doc}, '$.phases') AS p, "
        "json_each(CASE p.type WHEN 'object' THEN p.value ELSE '{}' END, '$.log') AS l)"
    )
    return ", ".join(
        [
            clean(f"{row}.id"),
            clean(f"json_extract({doc}, '$.name')"),
            clean(f"json_extract({doc}, '$.message')"),
            clean(f"json_extract({doc}, '$.reason')"),
            log,
            f"'e' || hex({row}.environment)",
        ]
    )


def _day(row: str, length: int = 10) -> str:
    """The day (`YYYY-MM-DD`) of a row's `start`, or its month with `length` 7; NULL when
    `start` is not an ISO timestamp."""
    return f"CASE WHEN {row}.start GLOB '{_ISO_DAY}' THEN substr({row}.start, 1, {length}) END"


def _bump(table: str, keys: dict[str, str], step: str) -> str:
    """Add `step` to the counter row of `keys` (created at 0 when missing)."""
    match = " AND ".join(f"{column} IS {value}" for column, value in keys.items())
    return (
        f"INSERT INTO {table} ({', '.join(keys)}, n) SELECT {', '.join(keys.values())}, 0 "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {match});\n"
        f"    UPDATE {table} SET n = n {step} WHERE {match};"
    )


def _counters(row: str, step: str) -> str:
    env, name, status = f"{row}.environment", f"{row}.name", f"{row}.status"
    return "\n    ".join(
        [
            _bump("execution_totals", {"environment": env, "status": status}, step),
            _bump("execution_counts", {"environment": env, "name": name, "status": status}, step),
            _bump("execution_days", {"environment": env, "status": status, "day": _day(row)}, step),
            _bump(
                "execution_months",
                {"environment": env, "status": status, "month": _day(row, 7)},
                step,
            ),
        ]
    )


FTS_TABLE = (
    "CREATE VIRTUAL TABLE executions_fts USING fts5(id, name, message, reason, log, env, "
    "content='', columnsize=0, "
    f"tokenize=\"unicode61 remove_diacritics 2 categories 'L* N*' tokenchars '{_LINE_BREAK}'\")"
)


def _trigger(name: str, event: str, body: Iterable[str], when: str = "") -> str:
    condition = f"\nWHEN {when}" if when else ""
    statements = "\n".join(f"    {statement}" for statement in body)
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON executions{condition}\n"
        f"BEGIN\n{statements}\nEND"
    )


_FTS_COLUMNS = "rowid, id, name, message, reason, log, env"
_FTS_INSERT = f"INSERT INTO executions_fts ({_FTS_COLUMNS}) VALUES (NEW.rowid, {_texts('NEW')});"
_FTS_DELETE = (
    f"INSERT INTO executions_fts (executions_fts, {_FTS_COLUMNS}) "
    f"VALUES ('delete', OLD.rowid, {_texts('OLD')});"
)
_COUNTERS_CHANGED = (
    "OLD.environment IS NOT NEW.environment OR OLD.name IS NOT NEW.name "
    f"OR OLD.status IS NOT NEW.status OR ({_day('OLD')}) IS NOT ({_day('NEW')})"
)
#: the triggers that keep the search index and the counters in step with `executions`
TRIGGERS = (
    _trigger("executions_fts_insert", "INSERT", [_FTS_INSERT]),
    _trigger("executions_fts_update", "UPDATE OF doc", [_FTS_DELETE, _FTS_INSERT]),
    _trigger("executions_fts_delete", "DELETE", [_FTS_DELETE]),
    _trigger("execution_counts_insert", "INSERT", [_counters("NEW", "+ 1")]),
    _trigger(
        "execution_counts_update",
        "UPDATE OF doc",
        [_counters("OLD", "- 1"), _counters("NEW", "+ 1")],
        _COUNTERS_CHANGED,
    ),
    _trigger("execution_counts_delete", "DELETE", [_counters("OLD", "- 1")]),
)
#: the indexes of the list call: the default order, and the filters on name and on status; the
#: trailing columns let a filter on them be checked in the index, without reading documents
LIST_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_list_start "
    "ON executions(environment, start DESC, id DESC, status, name, trigger_)",
    "CREATE INDEX IF NOT EXISTS ix_list_name "
    "ON executions(environment, name, start DESC, id DESC, status)",
    "CREATE INDEX IF NOT EXISTS ix_list_status "
    "ON executions(environment, status, start DESC, id DESC, name)",
    # the indexes of earlier versions, which these replace
    "DROP INDEX IF EXISTS ix_exec_env_start",
    "DROP INDEX IF EXISTS ix_exec_env_name_start",
    "DROP INDEX IF EXISTS ix_exec_env_status_start",
)
COUNT_TABLES = (
    "CREATE TABLE execution_totals (environment TEXT, status TEXT, n INTEGER NOT NULL)",
    "CREATE TABLE execution_counts (environment TEXT, name TEXT, status TEXT, n INTEGER NOT NULL)",
    "CREATE TABLE execution_days (environment TEXT, status TEXT, day TEXT, n INTEGER NOT NULL)",
)
MONTHS_TABLE = (
    "CREATE TABLE execution_months (environment TEXT, status TEXT, month TEXT, n INTEGER NOT NULL)"
)
#: covering indexes of the counters: a sum reads the index alone, days in order
COUNT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_totals_cover ON execution_totals(environment, status, n)",
    "CREATE INDEX IF NOT EXISTS ix_counts_cover ON execution_counts(environment, name, status, n)",
    "CREATE INDEX IF NOT EXISTS ix_days_cover ON execution_days(environment, day, status, n)",
    "CREATE INDEX IF NOT EXISTS ix_months_cover ON execution_months(environment, month, status, n)",
    "DROP INDEX IF EXISTS ix_execution_counts",
    "DROP INDEX IF EXISTS ix_execution_days",
)


def _drop_counter_triggers(conn: sqlite3.Connection) -> None:
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS execution_counts_{trigger}")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the search index and the counters, filled from the rows already stored."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        for statement in LIST_INDEXES:
            conn.execute(statement)
        if "executions_fts" in present and "env" not in {
            row[1] for row in conn.execute("PRAGMA table_info(executions_fts)")
        }:  # made by an earlier version: built again
            conn.execute("DROP TABLE executions_fts")
            for trigger in ("insert", "update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS executions_fts_{trigger}")
            present.discard("executions_fts")
        if "executions_fts" not in present:
            conn.execute(FTS_TABLE)
            conn.execute(
                f"INSERT INTO executions_fts ({_FTS_COLUMNS}) "
                f"SELECT executions.rowid, {_texts('executions')} FROM executions"
            )
        if "execution_totals" not in present:  # counters of an earlier version: made again
            for table in ("execution_counts", "execution_days", "execution_months"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            present.discard("execution_months")
            _drop_counter_triggers(conn)
            for statement in COUNT_TABLES:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO execution_totals (environment, status, n) "
                "SELECT environment, status, count(*) FROM executions GROUP BY environment, status"
            )
            conn.execute(
                "INSERT INTO execution_counts (environment, name, status, n) "
                "SELECT environment, name, status, count(*) FROM executions "
                "GROUP BY environment, name, status"
            )
            conn.execute(
                "INSERT INTO execution_days (environment, status, day, n) "
                f"SELECT environment, status, {_day('executions')} AS d, count(*) "
                "FROM executions GROUP BY environment, status, d"
            )
        if "execution_months" not in present:  # added later than the other counters
            _drop_counter_triggers(conn)  # made again below, keeping the months too
            conn.execute(MONTHS_TABLE)
            conn.execute(
                "INSERT INTO execution_months (environment, status, month, n) "
                "SELECT environment, status, substr(day, 1, 7) AS m, sum(n) FROM execution_days "
                "GROUP BY environment, status, m"
            )
        for statement in COUNT_INDEXES:
            conn.execute(statement)
        for trigger in TRIGGERS:
            conn.execute(trigger)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --- filters -------------------------------------------------------------------------------


class NeedsDocument(Exception):
    """A filter that a counter table cannot answer: it reads more than `name` and `status`."""


def _json_path(parts: Sequence[str]) -> str:
    return "$" + "".join(f'."{part}"' for part in parts)


def expression(field: str) -> str:
    """The SQL expression of a top-level field: its column when it has one."""
    if field == "_id":
        return "id"
    if field in COLUMNS:
        return COLUMNS[field]
    return f"json_extract(doc, '{_json_path(field.split('.'))}')"


def _is_plain(value: Any) -> bool:
    """A value a text column compares with directly: a string or null."""
    if isinstance(value, tuple):
        return all(_is_plain(item) for item in value)
    return value is None or isinstance(value, str)


class Compiler:
    """Compiles a filter tree into a WHERE clause and its parameters.

    With `columns` set, only those fields may be used (they are columns of a counter table),
    and anything else raises `NeedsDocument`.
    """

    def __init__(self, columns: frozenset[str] | None = None) -> None:
        self.params: list[Any] = []
        self.columns = columns
        self._aliases = 0

    def node(self, node: Node) -> str:
        if isinstance(node, Condition):
            return self.condition(node)
        if isinstance(node, And):
            if not node.items:
                return "1"
            return "(" + " AND ".join(self.node(item) for item in node.items) + ")"
        if isinstance(node, Or):
            merged = _one_in(node)
            if merged is not None:
                return self.condition(merged)
            return "(" + " OR ".join(self.node(item) for item in node.items) + ")"
        if isinstance(node, Not):
            # A comparison with a missing field is false, so its negation is true (as with
            # MongoDB's $nor); SQL would make both unknown.
            return f"(NOT coalesce({self.node(node.item)}, 0))"
        raise TypeError(f"unknown query node {node!r}")

    def condition(self, cond: Condition) -> str:
        if cond.op == "ne":
            return self.node(Not(Condition(cond.field, "eq", cond.value)))
        column = "id" if cond.field == "_id" else COLUMNS.get(cond.field)
        if self.columns is not None and (
            cond.field not in self.columns or cond.op == "exists" or not _is_plain(cond.value)
        ):
            raise NeedsDocument(cond.field)
        if column is not None and cond.op != "exists" and _is_plain(cond.value):
            return self._column(column, cond)
        parts = cond.field.split(".")
        return self._path("executions.doc", _json_path(parts[:1]), parts[1:], cond)

    def _column(self, column: str, cond: Condition) -> str:
        """A condition on a column that holds a string (or null): served by the indexes."""
        value = cond.value
        if cond.op == "eq" or (cond.op in ("gte", "lte") and value is None):
            if value is None:
                return f"{column} IS NULL"
            self.params.append(value)
            return f"{column} = ?"
        if cond.op == "in":
            present = [v for v in value if v is not None]
            clauses = []
            if present:
                self.params.extend(present)
                clauses.append(f"{column} IN ({', '.join('?' * len(present))})")
            if len(present) != len(value):
                clauses.append(f"{column} IS NULL")
            return "(" + " OR ".join(clauses) + ")" if clauses else "0"
        if value is None:  # gt / lt null: nothing is
            return "0"
        self.params.append(value)
        if cond.op == "regex":
            return f"regexp(?, {column})"
        return f"{column} {_SQL_OPS[cond.op]} ?"

    def _alias(self) -> str:
        self._aliases += 1
        return f"j{self._aliases}"

    def _path(self, source: str, path: str, rest: Sequence[str], cond: Condition) -> str:
        """The condition on the value at `path` of the JSON `source`, through arrays.

        As MongoDB: where the path meets an array, it goes on into each element (a
        sub-document) and the condition holds when it holds for one of them.
        """
        if not rest:
            return self._terminal(source, path, cond)
        part, deeper = rest[0], rest[1:]
        # parameters are taken in the order the SQL text holds them: the array branch first
        if part.isdigit():  # a position in an array
            first = self._path(source, f"{path}[{part}]", deeper, cond)
        else:
            alias = self._alias()
            inner = self._path(f"{alias}.value", _json_path([part]), deeper, cond)
            first = (
                f"EXISTS (SELECT 1 FROM json_each({source}, '{path}') AS {alias} "
                f"WHERE {alias}.type = 'object' AND {inner})"
            )
        direct = self._path(source, f'{path}."{part}"', deeper, cond)
        return f"(CASE json_type({source}, '{path}') WHEN 'array' THEN {first} ELSE {direct} END)"

    def _terminal(self, source: str, path: str, cond: Condition) -> str:
        kind = f"json_type({source}, '{path}')"
        if cond.op == "exists":
            return f"({kind} IS NOT NULL)"
        alias = self._alias()
        each = self._value(f"{alias}.value", f"{alias}.type", cond)
        whole = self._value(f"json_extract({source}, '{path}')", kind, cond)
        return (
            f"(CASE {kind} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each({source}, '{path}') "
            f"AS {alias} WHERE {each}) ELSE {whole} END)"
        )

    def _value(self, value: str, kind: str, cond: Condition) -> str:
        """The condition on one JSON value (`value` its SQL value, `kind` its JSON type)."""
        if cond.op == "in":
            if not cond.value:
                return "0"
            return "(" + " OR ".join(self._compare(value, kind, "eq", v) for v in cond.value) + ")"
        if cond.op == "regex":
            self.params.append(cond.value)
            return f"({kind} = 'text' AND regexp(?, {value}))"
        return self._compare(value, kind, cond.op, cond.value)

    def _compare(self, value: str, kind: str, op: str, operand: Any) -> str:
        if operand is None:
            if op in ("eq", "gte", "lte"):
                return f"({kind} IS NULL OR {kind} = 'null')"
            return "0"
        types = "= 'text'" if isinstance(operand, str) else "IN ('integer', 'real')"
        self.params.append(operand)
        return f"({kind} {types} AND {value} {_SQL_OPS[op]} ?)"


def _one_in(node: Or) -> Condition | None:
    """`a = x OR a = y` on one column, as `a IN (x, y)`: SQLite checks an IN list against an
    index entry faster than a chain of ORs (`_filter=status=failed or status=running`)."""
    items = [item for item in node.items if isinstance(item, Condition)]
    if len(items) != len(node.items) or len({item.field for item in items}) != 1:
        return None
    field = items[0].field
    if (field != "_id" and field not in COLUMNS) or not all(
        item.op == "eq" and isinstance(item.value, str) for item in items
    ):
        return None
    return Condition(field, "in", tuple(item.value for item in items))


_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


# --- _search ---------------------------------------------------------------------------------

_FTS_SOURCE = "SELECT rowid FROM executions_fts WHERE executions_fts MATCH ?"
#: the FTS columns a search looks through (`env` only restricts)
_SEARCHED = "{id name message reason log}"
#: a search with at most this many matches is answered from its matches (each read and
#: sorted); a broader one by walking the list's index in order, keeping the matches
SMALL_SEARCH = 1000


def _match(node: SearchNode, environment: str | None = None) -> str | None:
    """The FTS5 MATCH expression of a search, restricted to an environment when given."""
    query = _fts(node)
    if query is None:
        return None
    match = f"{_SEARCHED} : ({query})"
    if environment is not None:
        match += f' AND env : "e{environment.encode().hex()}"'
    return match


def _fts(node: SearchNode) -> str | None:
    """The FTS5 query of a search, or None when FTS5 cannot say it alone (a lone NOT)."""
    if isinstance(node, Term):
        return '"' + " ".join(node.words) + '"'
    if isinstance(node, AnyOf):
        items = [_fts(item) for item in node.items]
        if any(item is None for item in items):
            return None
        return "(" + " OR ".join(f"({item})" for item in items) + ")"
    if isinstance(node, AllOf):
        positive = [_fts(item) for item in node.items if not isinstance(item, NoneOf)]
        negative = [_fts(item.item) for item in node.items if isinstance(item, NoneOf)]
        if not positive or any(item is None for item in (*positive, *negative)):
            return None
        query = "(" + " AND ".join(f"({item})" for item in positive) + ")"
        for item in negative:
            query = f"({query} NOT ({item}))"
        return query
    return None


def search_sql(node: SearchNode, params: list[Any]) -> str:
    """A WHERE clause for a search: whole sub-searches go to the FTS index as one MATCH."""
    query = _match(node)
    if query is not None:
        params.append(query)
        return f"executions.rowid IN ({_FTS_SOURCE})"
    if isinstance(node, NoneOf):
        return f"NOT ({search_sql(node.item, params)})"
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    assert isinstance(node, AllOf | AnyOf)
    return "(" + joiner.join(search_sql(item, params) for item in node.items) + ")"


# --- list ------------------------------------------------------------------------------------


Clause = tuple[str, list[Any]]


def _remembered(
    compile_: Callable[[Query, Any], Clause | None],
) -> Callable[[Query, Any], Clause | None]:
    """`compile_`, remembered in the query (`Query.compiled`): dashboards send the same few
    queries again and again, and compiling one costs about as much as reading a page off an
    index. The parameters come back as a new list each time (callers add to them)."""

    @functools.wraps(compile_)
    def call(query: Query, option: Any) -> Clause | None:
        key = (compile_, option)
        try:
            clause = query.compiled[key]
        except KeyError:
            found = compile_(query, option)
            clause = query.compiled[key] = None if found is None else (found[0], tuple(found[1]))
        return None if clause is None else (clause[0], list(clause[1]))

    return call


def _where(query: Query) -> Clause:
    """The WHERE clause of a query."""
    clause = _where_remembered(query, False)
    assert clause is not None
    return clause


def _compile_where(query: Query, driven: bool) -> Clause:
    """`driven`: the search's matches drive the plan (the unary `+` keeps SQLite from walking
    an index of the environment instead)."""
    compiler = Compiler()
    compiler.params.append(query.environment)
    clauses = ["+executions.environment = ?" if driven else "executions.environment = ?"]
    if query.where is not None:
        clauses.append(compiler.node(query.where))
    if query.search is not None:
        clauses.append(search_sql(query.search, compiler.params))
    return " AND ".join(clauses), compiler.params


def _counter_where(query: Query, columns: frozenset[str]) -> Clause | None:
    """The filter over a counter table, or None when it cannot answer it."""
    return _counter_where_remembered(query, columns)


def _compile_counter_where(query: Query, columns: frozenset[str]) -> Clause | None:
    if query.search is not None:
        return None
    compiler = Compiler(columns)
    compiler.params.append(query.environment)
    sql = "environment = ?"
    if query.where is not None:
        try:
            sql += " AND " + compiler.node(query.where)
        except NeedsDocument:
            return None
    return sql, compiler.params


_where_remembered = _remembered(_compile_where)
_counter_where_remembered = _remembered(_compile_counter_where)


def _order(query: Query) -> list[tuple[str, int]]:
    keys = list(query.sort)
    if all(name != "_id" for name, _ in keys):
        keys.append(("_id", query.sort[0][1]))  # a deterministic order among equals
    return keys


def _order_sql(keys: Iterable[tuple[str, int]]) -> str:
    return ", ".join(
        f"{expression(name)} {'DESC' if direction < 0 else 'ASC'}" for name, direction in keys
    )


def count(conn: sqlite3.Connection, query: Query, listed: str | None = None) -> int:
    """How many executions the query selects: from the counters when they can say it.
    `listed`: as for `_where_of`."""
    for table, columns in (
        ("execution_totals", frozenset({"status"})),
        ("execution_counts", frozenset({"name", "status"})),
    ):
        counted = _counter_where(query, columns)
        if counted is not None:
            sql, params = counted
            row = conn.execute(f"SELECT coalesce(sum(n), 0) FROM {table} WHERE {sql}", params)
            return int(row.fetchone()[0])
    sql, params = _where_of(query, listed)
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
    counted = _counter_where(query, frozenset({"status"}))
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


def page(conn: sqlite3.Connection, query: Query, listed: str | None = None) -> list[bytes]:
    """The documents of the page, as stored JSON (UTF-8 bytes: nothing decodes them), in order.

    Rows skipped by `OFFSET` cost an index step each, not a document read (SQLite defers the
    table lookup); a deep skip in `start` order first jumps to its day (`_deep_skip`).
    `listed`: as for `_where_of`.
    """
    if query.limit == 0:
        return []
    jump = _deep_skip(conn, query) if query.skip >= DEEP_SKIP else None
    if jump is None:
        sql, params = _page_statement(query, listed)
    else:
        bound, bound_params, skip = jump
        where, where_params = _where_of(query, listed)
        sql = (
            f"SELECT CAST(executions.doc AS BLOB) FROM {_source(listed is not None)} "
            f"WHERE {where} AND {bound} ORDER BY {_order_sql(_order(query))} LIMIT ? OFFSET ?"
        )
        params = (*where_params, *bound_params, query.limit, skip)
    return [row[0] for row in conn.execute(sql, params).fetchall()]


def _page_statement(query: Query, listed: str | None) -> tuple[str, tuple[Any, ...]]:
    """The page's statement and its parameters, remembered in the query (a page off an index
    takes a few microseconds: building its SQL again each time would be most of it).

    When a search's matches are listed, each is read and sorted: the sort then
    carries only the matches' keys, and the page's documents are read after it (sorting the
    documents themselves costs half as much again)."""
    key = ("page", listed is not None)
    statement: tuple[str, tuple[Any, ...]] | None = query.compiled.get(key)
    if statement is None:
        where, params = _where_of(query, listed)
        keys = _order(query)
        if listed is None:
            sql = (
                f"SELECT CAST(executions.doc AS BLOB) FROM executions WHERE {where} "
                f"ORDER BY {_order_sql(keys)} LIMIT ? OFFSET ?"
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
                f"ORDER BY {_order_sql(keys)} LIMIT ? OFFSET ?) "
                f"AS p CROSS JOIN executions AS e ON e.rowid = p.r ORDER BY {order}"
            )
        statement = query.compiled[key] = (sql, (*params, query.limit, query.skip))
    if listed is not None:  # the matches of this call, in place of the last call's
        values = statement[1]
        return statement[0], (*values[:-3], listed, *values[-2:])
    return statement


#: a selective search's matches, listed (`_where_of`)
_LISTED_SOURCE = "SELECT value FROM json_each(?)"


def _source(listed: bool) -> str:
    """The table a list statement reads: with its rows listed, through their rowids alone (no
    index: SQLite would rather walk an index of a filter's, `status`, through every row)."""
    return "executions NOT INDEXED" if listed else "executions"


def _where_of(query: Query, listed: str | None) -> Clause:
    """The WHERE clause of a query (`_where`); with `listed`, a JSON array of the rowids its
    search matches, read from the index once, in place of the search (the matches then drive
    the plan)."""
    if listed is None:
        return _where(query)
    clause = _listed_where_remembered(query, None)
    assert clause is not None
    sql, params = clause
    params[-1] = listed
    return sql, params


def _compile_listed_where(query: Query, _: Any) -> Clause:
    sql, params = _compile_where(query, driven=True)
    # a search the index answers alone is one MATCH, the last clause and parameter
    searched = f"executions.rowid IN ({_FTS_SOURCE})"
    assert sql.endswith(searched), sql
    return sql[: -len(searched)] + f"executions.rowid IN ({_LISTED_SOURCE})", params


_listed_where_remembered = _remembered(_compile_listed_where)


def list_page(conn: sqlite3.Connection, query: Query) -> tuple[list[bytes], int]:
    """The page as stored JSON (UTF-8 bytes), and the total, read in one snapshot.

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
                f"SELECT count(*), json_group_array(rowid) FROM ({_FTS_SOURCE} LIMIT ?)",
                [match, SMALL_SEARCH + 1],
            ).fetchone()
            if found <= SMALL_SEARCH:
                matches, listed = found, rowids
            else:
                sql = f"SELECT count(*) FROM ({_FTS_SOURCE})"
                matches = int(conn.execute(sql, [match]).fetchone()[0])
        if matches is not None and query.where is None:
            total = matches
        elif query.skip == 0 and query.limit > 0:
            # the first page, read first: when it is not full, it is the whole answer
            docs = page(conn, query, listed)
            if len(docs) < query.limit:
                return docs, len(docs)
            return docs, count(conn, query, listed)
        else:
            total = count(conn, query, listed)
        return (page(conn, query, listed) if total > query.skip else []), total
    finally:
        conn.execute("COMMIT")


def search_match(conn: sqlite3.Connection, query: Query) -> str | None:
    """The FTS5 query of a list query's search, restricted to its environment when others
    exist; None without a search, or when the index cannot answer it alone (a lone NOT)."""
    if query.search is None:
        return None
    # Restricting the index to an environment costs a walk through that environment's token;
    # when the environment holds every execution (the common case) there is nothing to restrict.
    here, everywhere = conn.execute(
        "SELECT coalesce(sum(n) FILTER (WHERE environment = ?), 0), coalesce(sum(n), 0) "
        "FROM execution_totals",
        [query.environment],
    ).fetchone()
    return _match(query.search, None if here == everywhere else query.environment)


# --- _distinct -------------------------------------------------------------------------------


def _json_value(kind: str, value: Any) -> Any:
    if kind in ("object", "array"):
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
            counted = _counter_where(query, frozenset({"name", "status"}))
            if counted is not None:
                sql, params = counted
                return _distinct_column(conn, field, "execution_counts", f"{sql} AND n > 0", params)
        where, params = _where(query)
        if field == "_id" or field in COLUMNS:
            return _distinct_column(conn, field, "executions", where, params)
        found = _path_values(conn, field, where, params)
        values = sorted_distinct(value for values in found for value in values)
        if len(values) > MAX_DISTINCT:
            raise too_many_values("_distinct", field)
        return values
    finally:
        conn.execute("COMMIT")


def _path_values(
    conn: sqlite3.Connection, field: str, where: str, params: list[Any]
) -> Iterator[list[Any]]:
    """For each execution the WHERE clause selects, the values at `field` (`values_at`)."""
    parts = field.split(".")
    first = _json_path(parts[:1])
    for kind, value in conn.execute(
        f"SELECT json_type(doc, '{first}'), json_extract(doc, '{first}') FROM executions "
        f"WHERE {where} AND json_type(doc, '{first}') IS NOT NULL",
        params,
    ):
        yield values_at({parts[0]: _json_value(kind, value)}, parts)


# --- _fieldinfo ------------------------------------------------------------------------------


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
            _counter_where(query, frozenset({"name", "status"}))
            if field in ("name", "status")
            else None
        )
        if counters is not None:
            sql, params = counters
            return field_buckets(
                field, _column_counts(conn, field, "execution_counts", sql, params, "sum(n)")
            )
        where, params = _where(query)
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
