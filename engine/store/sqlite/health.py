"""The SQLite store's health, for `procexec store check`: whether its file opens as a database,
which of the indexes `schema.ensure_schema` makes it holds, and its counts. Reads only."""

from __future__ import annotations

import sqlite3

from procexec.engine.store.base import IndexState, StoreReport
from procexec.engine.store.sqlite.schema import wanted_indexes

__all__ = ["check"]


def check(conn: sqlite3.Connection) -> StoreReport:
    """The report of the store on `conn` (a connection of its own, whose busy timeout bounds
    the wait for a writer's lock)."""
    try:
        present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:  # not a database, locked past the timeout, unreadable
        return StoreReport("sqlite", reachable=False, error=str(exc))
    indexes = tuple(IndexState(table, name, name in present) for table, name in wanted_indexes())
    try:
        total: int | None = None
        checkpoints: int | None = None
        by_status: dict[str, int] = {}
        if "executions" in present:
            (total,) = conn.execute("SELECT count(*) FROM executions").fetchone()
            rows = conn.execute(  # from the counters the store keeps, not a read of every run
                "SELECT status, sum(n) FROM execution_totals GROUP BY status HAVING sum(n) != 0"
                if "execution_totals" in present
                else "SELECT status, count(*) FROM executions GROUP BY status"
            )
            by_status = {str(status): count for status, count in rows if status is not None}
        if "checkpoints" in present:
            (checkpoints,) = conn.execute("SELECT count(*) FROM checkpoints").fetchone()
    except sqlite3.Error as exc:
        return StoreReport("sqlite", reachable=True, error=str(exc), indexes=indexes)
    return StoreReport(
        "sqlite",
        reachable=True,
        indexes=indexes,
        executions=total,
        by_status=by_status,
        checkpoints=checkpoints,
    )
