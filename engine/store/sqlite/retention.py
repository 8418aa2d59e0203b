"""Retention on the SQLite store: finished runs past their time deleted in bounded batches.

The triggers on `executions` (`schema.TRIGGERS`) take each deleted row out of the search index
and the counters in the same transaction; the run's checkpoints and change journal go with it.
"""

from __future__ import annotations

import sqlite3

from procexec.engine.store.sqlite.statuses import FINISHED_RUNS

#: when a run finished: its end, or its start when it has none
FINISHED = "coalesce(end_, start)"
#: the index of `purge`: finished runs (alone: a partial index) by when they finished; and the
#: index of earlier versions over every run, which it replaces
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS ix_exec_finished_at ON executions({FINISHED}) "
    f"WHERE {FINISHED_RUNS}",
    "DROP INDEX IF EXISTS ix_exec_finished",
)


def purge(conn: sqlite3.Connection, before: str, limit: int) -> int:
    """Delete up to `limit` finished runs that finished before `before`, in one transaction.

    They are looked for first without taking the write lock, so that a pass with nothing to
    delete (the usual case) holds up no writer."""
    if limit <= 0:
        return 0
    expired = f"{FINISHED_RUNS} AND {FINISHED} < ?"
    ids = [
        row[0]
        for row in conn.execute(
            f"SELECT id FROM executions WHERE {expired} LIMIT ?", (before, limit)
        )
    ]
    if not ids:
        return 0
    chosen = ", ".join("?" * len(ids))
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = conn.execute(
            f"DELETE FROM executions WHERE id IN ({chosen}) AND {expired}",
            (*ids, before),
        ).rowcount
        for table in ("checkpoints", "execution_changes"):
            conn.execute(
                f"DELETE FROM {table} WHERE id IN ({chosen}) AND NOT EXISTS "
                f"(SELECT 1 FROM executions WHERE executions.id = {table}.id)",
                ids,
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(deleted)
