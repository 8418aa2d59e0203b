"""The SQLite store's slots of the concurrency limits (`engine.store.slots`): the `slots`
table, one row a slot held, and the parked runs, found among the `triggered` ones by their
`PARKED` dispatch mark (the housekeeping's index on status and dispatch mark)."""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Sequence

from procexec.engine.store.slots import PARKED
from procexec.engine.store.sqlite.statuses import TRIGGERED_RUNS
from procexec.engine.store.sqlite.writers import add_columns, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS slots (
    scope TEXT NOT NULL,
    n INTEGER NOT NULL,
    holder TEXT NOT NULL,
    taken TEXT NOT NULL,
    PRIMARY KEY (scope, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_slots_holder ON slots(holder, scope);
"""

#: the parked runs of a scope (`?`: the scope), among the triggered runs
_PARKED = f"FROM executions WHERE {TRIGGERED_RUNS} AND dispatched = '{PARKED}' AND waiting = ?"


def ensure_slots(conn: sqlite3.Connection) -> None:
    """The slots table, and the operators' limit in the processes table of a store made
    before it."""
    conn.executescript(SCHEMA)
    add_columns(conn, "processes", {"max_running": "INTEGER"})


class SQLiteSlots:
    """`SlotStore` on the store's connection, each write in a transaction of its own."""

    #: the store's write gate (`writers.gate`)
    _writing: threading.RLock

    def _connect(self) -> sqlite3.Connection:
        raise NotImplementedError

    def take_slots(
        self, holder: str, wanted: Sequence[tuple[str, int]], start: str, at: str
    ) -> tuple[str, int] | None:
        conn = self._connect()
        with transaction(conn, self._writing):
            for scope, limit in wanted:
                held = conn.execute(
                    "SELECT n FROM slots WHERE scope = ? AND holder = ?", (scope, holder)
                ).fetchone()
                if held is not None:
                    continue
                used = {n for (n,) in conn.execute("SELECT n FROM slots WHERE scope = ?", (scope,))}
                earlier = conn.execute(
                    f"SELECT 1 {_PARKED} AND (start < ? OR (start = ? AND id < ?)) LIMIT 1",
                    (scope, start, start, holder),
                ).fetchone()
                if len(used) >= limit or earlier is not None:
                    conn.execute("ROLLBACK")
                    return scope, len(used)
                free = next(n for n in range(limit) if n not in used)
                conn.execute(
                    "INSERT INTO slots (scope, n, holder, taken) VALUES (?, ?, ?, ?)",
                    (scope, free, holder, at),
                )
        return None

    def release_slots(self, holder: str) -> builtins.list[str]:
        conn = self._connect()
        with transaction(conn, self._writing):
            scopes = [
                scope
                for (scope,) in conn.execute(
                    "SELECT scope FROM slots WHERE holder = ? ORDER BY scope", (holder,)
                )
            ]
            if scopes:
                conn.execute("DELETE FROM slots WHERE holder = ?", (holder,))
        return scopes

    def slots_held(self, scope: str) -> int:
        row = self._connect().execute("SELECT count(*) FROM slots WHERE scope = ?", (scope,))
        return int(row.fetchone()[0])

    def slot_holders(self) -> builtins.list[tuple[str, str]]:
        rows = self._connect().execute("SELECT scope, holder FROM slots ORDER BY scope, n")
        return [(scope, holder) for scope, holder in rows]

    def waiting_scopes(self) -> dict[str, int]:
        rows = self._connect().execute(
            f"SELECT waiting, count(*) FROM executions WHERE {TRIGGERED_RUNS} AND dispatched = ? "
            "AND waiting IS NOT NULL GROUP BY waiting",
            (PARKED,),
        )
        return {scope: int(count) for scope, count in rows}

    def unpark(self, scope: str, at: str) -> str | None:
        conn = self._connect()
        with transaction(conn, self._writing):
            row = conn.execute(f"SELECT id {_PARKED} ORDER BY start, id LIMIT 1", (scope,))
            found = row.fetchone()
            if found is not None:
                conn.execute(
                    "UPDATE executions SET waiting = NULL, dispatched = ? WHERE id = ?",
                    (at, found[0]),
                )
        return None if found is None else str(found[0])
