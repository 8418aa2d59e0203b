"""The SQLite store's `observations` table: the series values that LOAD phases write."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from procexec.engine.store.base import Observation


def upsert_observations(
    conn: sqlite3.Connection, environment: str, rows: Sequence[Observation]
) -> int:
    """Write the rows, in the caller's transaction."""
    conn.executemany(
        "INSERT INTO observations (environment, series_id, date, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (environment, series_id, date) DO UPDATE SET value = excluded.value",
        [(environment, row.series_id, row.date, row.value) for row in rows],
    )
    return len(rows)


def get_series(conn: sqlite3.Connection, environment: str, series_id: str) -> dict[str, float]:
    rows = conn.execute(
        "SELECT date, value FROM observations WHERE environment = ? AND series_id = ?"
        " ORDER BY date",
        (environment, series_id),
    ).fetchall()
    return dict(rows)
