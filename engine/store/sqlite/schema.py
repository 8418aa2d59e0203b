"""The SQLite store's schema, and the steps that bring a store made by an earlier version up to it.

- `executions` holds each document as compact JSON beside its hidden bookkeeping (`META_KEYS`);
  the top-level fields in `COLUMNS` are generated columns, indexed for the list call
  (`LIST_INDEXES`) and for housekeeping.
- `executions_fts` (FTS5, contentless, one row per execution) holds the words of `_id`, `name`,
  `message`, `reason` and every log line (a line-break token keeps phrases within a line), and
  the environment as a token.
- `execution_totals` (per environment and status), `execution_counts` (per environment, name
  and status), `execution_months` and `execution_days` (per environment, status and month or
  day of `start`) count the executions.
- Triggers on `executions` keep the search index in step with every insert, update and delete,
  and the counters with every delete, in the writer's transaction; the store's own inserts and
  updates keep the counters (`counters`).

`ensure_schema` makes what is missing when a store opens; the search index and the counters
are filled from the rows already stored. A store made by an earlier version gains the
bookkeeping columns added since (`ALTER TABLE`), the list indexes that replace its three older
ones, its search index built again when it lacks the environment column, and the month
counters, made from the day counters (tests/engine/test_store_query_sqlite.py opens such
stores).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from procexec.engine.store.base import JSON_META_KEYS, META_KEYS
from procexec.engine.store.sqlite import retention
from procexec.engine.store.sqlite.slots import ensure_slots
from procexec.engine.store.sqlite.statuses import ACTIVE_RUNS, TRIGGERED_RUNS
from procexec.engine.store.sqlite.tokens import ensure_token_columns
from procexec.engine.store.sqlite.writers import add_columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    worker TEXT,
    heartbeat TEXT,
    input TEXT,
    chain TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    environment TEXT GENERATED ALWAYS AS (json_extract(doc, '$.environment')) VIRTUAL,
    name TEXT GENERATED ALWAYS AS (json_extract(doc, '$.name')) VIRTUAL,
    status TEXT GENERATED ALWAYS AS (json_extract(doc, '$.status')) VIRTUAL,
    start TEXT GENERATED ALWAYS AS (json_extract(doc, '$.start')) VIRTUAL,
    end_ TEXT GENERATED ALWAYS AS (json_extract(doc, '$.end')) VIRTUAL,
    service TEXT GENERATED ALWAYS AS (json_extract(doc, '$.service')) VIRTUAL,
    trigger_ TEXT GENERATED ALWAYS AS (json_extract(doc, '$.trigger')) VIRTUAL,
    run_as TEXT GENERATED ALWAYS AS (json_extract(doc, '$.runAs')) VIRTUAL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    scope TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT,
    revoked TEXT,
    environments TEXT,
    processes TEXT
);
CREATE TABLE IF NOT EXISTS observations (
    environment TEXT NOT NULL,
    series_id TEXT NOT NULL,
    date TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (environment, series_id, date)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT NOT NULL,
    phase INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (id, phase)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS execution_changes (
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    change TEXT NOT NULL,
    PRIMARY KEY (id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processes (
    name TEXT PRIMARY KEY,
    enabled INTEGER,
    schedule TEXT,
    timezone TEXT,
    last_fire TEXT,
    missed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""

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
#: the triggers that keep the search index and the counters in step with `executions`
TRIGGERS = (
    _trigger("executions_fts_insert", "INSERT", [_FTS_INSERT]),
    _trigger("executions_fts_update", "UPDATE OF doc", [_FTS_DELETE, _FTS_INSERT]),
    _trigger("executions_fts_delete", "DELETE", [_FTS_DELETE]),
    # inserts and updates are counted by the store's writes (`counters`)
    _trigger("execution_counts_delete", "DELETE", [_counters("OLD", "- 1")]),
)
#: the triggers of earlier versions that counted inserts and updates (`counters` does now)
FORMER_TRIGGERS = ("execution_counts_insert", "execution_counts_update")
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
#: the indexes of the housekeeping, partial (`statuses`): active runs by heartbeat, triggered
#: runs by when they were sent
HOUSEKEEPING_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_exec_active_heartbeat "
    f"ON executions(heartbeat) WHERE {ACTIVE_RUNS}",
    "CREATE INDEX IF NOT EXISTS ix_exec_triggered_dispatched "
    f"ON executions(dispatched) WHERE {TRIGGERED_RUNS}",
    # the indexes of earlier versions over every run, which these replace
    "DROP INDEX IF EXISTS ix_exec_status_heartbeat",
    "DROP INDEX IF EXISTS ix_exec_status_dispatched",
)
COUNT_TABLES = (
    "CREATE TABLE execution_totals (environment TEXT, status TEXT, n INTEGER NOT NULL)",
    "CREATE TABLE execution_counts (environment TEXT, name TEXT, status TEXT, n INTEGER NOT NULL)",
    "CREATE TABLE execution_days (environment TEXT, status TEXT, day TEXT, n INTEGER NOT NULL)",
)
MONTHS_TABLE = (
    "CREATE TABLE execution_months (environment TEXT, status TEXT, month TEXT, n INTEGER NOT NULL)"
)
#: the counters' indexes. The day and month counters' are covering (`n` in them): a deep skip
#: sums them by the thousand, in order, from the index alone. The totals' and the processes'
#: hold the keys alone: a sum reads a few rows through them, and a count that moves (a run's
#: status, twice a run) rewrites the table's row and no index entry (two pages a transaction)
COUNT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_totals_keys ON execution_totals(environment, status)",
    "CREATE INDEX IF NOT EXISTS ix_counts_keys ON execution_counts(environment, name, status)",
    "CREATE INDEX IF NOT EXISTS ix_days_cover ON execution_days(environment, day, status, n)",
    "CREATE INDEX IF NOT EXISTS ix_months_cover ON execution_months(environment, month, status, n)",
    # the covering indexes of earlier versions, which these replace
    "DROP INDEX IF EXISTS ix_totals_cover",
    "DROP INDEX IF EXISTS ix_counts_cover",
)


def wanted_indexes() -> list[tuple[str, str]]:
    """(table, index) of every index `ensure_schema` makes, and the search index (the FTS
    table, of `executions`)."""
    statements = (*HOUSEKEEPING_INDEXES, *retention.INDEXES, *LIST_INDEXES, *COUNT_INDEXES)
    made = [re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+)", s) for s in statements]
    return [(match[2], match[1]) for match in made if match] + [("executions", "executions_fts")]


def _drop_counter_triggers(conn: sqlite3.Connection) -> None:
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS execution_counts_{trigger}")


def ensure_list_schema(conn: sqlite3.Connection) -> None:
    """Create the list call's indexes, the search index and the counters, filled from the
    rows already stored."""
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
        if "execution_totals" not in present:  # a new store, or one made before the counters
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
        for former in FORMER_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {former}")
        for trigger in TRIGGERS:
            conn.execute(trigger)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what the store lacks when it opens: its tables and their indexes, columns added
    since an earlier version, then the list call's (`ensure_list_schema`)."""
    conn.executescript(SCHEMA)
    # Stores made by an earlier version lack the newer bookkeeping columns: the meta, the
    # sequence number of a run's changes, and each journal entry's place among every run's.
    add_columns(
        conn,
        "executions",
        {**dict.fromkeys(META_KEYS, "TEXT"), "seq": "INTEGER NOT NULL DEFAULT 0"},
    )
    add_columns(conn, "execution_changes", {"pos": "INTEGER"})
    conn.execute("CREATE INDEX IF NOT EXISTS ix_changes_pos ON execution_changes(pos)")
    ensure_token_columns(conn)
    ensure_slots(conn)
    _checkpoints_by_phase(conn)
    for statement in HOUSEKEEPING_INDEXES:
        conn.execute(statement)
    # Retention looks for finished runs by when they finished.
    for statement in retention.INDEXES:
        conn.execute(statement)
    # The list call's indexes, full-text index and counters.
    ensure_list_schema(conn)


def _checkpoints_by_phase(conn: sqlite3.Connection) -> None:
    """A store made by an earlier version keeps one checkpoint a run (the latest, its key the
    run's id alone): its table is made again keyed by run and phase, keeping every row."""

    def keys() -> list[str]:
        return [row[1] for row in conn.execute("PRAGMA table_info(checkpoints)") if row[5]]

    if keys() != ["id"]:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if keys() != ["id"]:  # another process made it meanwhile
            conn.execute("ROLLBACK")
            return
        conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_by_run")
        conn.execute(
            "CREATE TABLE checkpoints (id TEXT NOT NULL, phase INTEGER NOT NULL, "
            "blob BLOB NOT NULL, PRIMARY KEY (id, phase)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO checkpoints (id, phase, blob) "
            "SELECT id, phase, blob FROM checkpoints_by_run"
        )
        conn.execute("DROP TABLE checkpoints_by_run")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def meta_columns(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """An execution's meta (`META_KEYS`) as its columns' values, JSON where the column holds it."""
    columns = {}
    for key, value in (meta or {}).items():
        if key not in META_KEYS:
            raise KeyError(f"unknown meta key {key!r}")
        columns[key] = json.dumps(value) if key in JSON_META_KEYS else value
    return columns
