"""The counters of executions (per environment and status; per name; per day and month of
`start`), kept by the store's own writes: an insert adds one to the new run's rows, an update
that moves a run (its status, mostly) takes one from its old rows and adds one to its new ones.

They were kept by triggers, which read each key back out of the documents' JSON (two documents,
four tables, some ten times each); the store holds both documents parsed already, so it passes
the keys as they are. Deletes (retention) still go through a trigger (`schema.TRIGGERS`)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

#: each counter table and the keys it counts by
TABLES = (
    ("execution_totals", ("environment", "status")),
    ("execution_counts", ("environment", "name", "status")),
    ("execution_days", ("environment", "status", "day")),
    ("execution_months", ("environment", "status", "month")),
)
#: the start of an ISO timestamp, as the schema's `_day` recognises it (GLOB, ASCII digits)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T")


def _column(value: Any) -> Any:
    """A top-level field as its generated column holds it (`json_extract`'s result)."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def keys(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a document is counted by."""
    start = doc.get("start")
    day = start[:10] if isinstance(start, str) and _ISO_DAY.match(start) else None
    return {
        "environment": _column(doc.get("environment")),
        "name": _column(doc.get("name")),
        "status": _column(doc.get("status")),
        "day": day,
        "month": None if day is None else day[:7],
    }


def bump(conn: sqlite3.Connection, counted: Mapping[str, Any], step: int) -> None:
    """Add `step` to every counter row of these keys (made when missing), in the caller's
    write transaction: an update that finds the row, else an insert."""
    for table, columns in TABLES:
        values = [counted[column] for column in columns]
        match = " AND ".join(f"{column} IS ?" for column in columns)
        cursor = conn.execute(f"UPDATE {table} SET n = n + ? WHERE {match}", (step, *values))
        if cursor.rowcount == 0:
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}, n) "
                f"VALUES ({', '.join('?' * len(columns))}, ?)",
                (*values, step),
            )
