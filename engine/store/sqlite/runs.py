"""What the engine reads and keeps of a run on SQLite beside its document: its sequence number
and holder, its checkpoints, one per finished phase (`checkpoints`), and its change journal
(`execution_changes`), both keyed by the run's id; each journal entry also holds its place in
the journal of every run (`pos`), which the all-runs stream follows (`journal_since`)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from procexec.engine.store.changes import JournalRow


def get_at(conn: sqlite3.Connection, execution_id: str) -> tuple[dict[str, Any], int] | None:
    """A run's document and its sequence number, read together."""
    row = conn.execute("SELECT doc, seq FROM executions WHERE id = ?", (execution_id,)).fetchone()
    return None if row is None else (json.loads(row[0]), int(row[1]))


def holder(conn: sqlite3.Connection, execution_id: str) -> tuple[str | None, str | None]:
    """A run's status and the claim that holds it."""
    row = conn.execute(
        "SELECT status, worker FROM executions WHERE id = ?", (execution_id,)
    ).fetchone()
    return (None, None) if row is None else (row[0], row[1])


def keep(conn: sqlite3.Connection, execution_id: str, phase: int, blob: bytes) -> None:
    """Keep a finished phase's checkpoint (replacing the one of the same phase)."""
    conn.execute(
        "INSERT INTO checkpoints (id, phase, blob) VALUES (?, ?, ?)"
        " ON CONFLICT (id, phase) DO UPDATE SET blob = excluded.blob",
        (execution_id, phase, blob),
    )


def load_checkpoint(
    conn: sqlite3.Connection, execution_id: str, phase: int | None
) -> tuple[int, bytes] | None:
    sql = "SELECT phase, blob FROM checkpoints WHERE id = ?"
    params: list[Any] = [execution_id]
    if phase is not None:
        sql, params = f"{sql} AND phase = ?", [execution_id, phase]
    row = conn.execute(f"{sql} ORDER BY phase DESC LIMIT 1", params).fetchone()
    return (int(row[0]), bytes(row[1])) if row else None


def changes(
    conn: sqlite3.Connection, execution_id: str, after: int
) -> list[tuple[int, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT seq, change FROM execution_changes WHERE id = ? AND seq > ? ORDER BY seq",
        (execution_id, after),
    )
    return [(int(seq), json.loads(change)) for seq, change in rows]


#: the part of a run's document an entry of the all-runs journal comes with
_SUMMARY = (
    "json_extract(e.doc, '$.name'), json_extract(e.doc, '$.status'), "
    "json_extract(e.doc, '$.message'), json_extract(e.doc, '$.phases')"
)


def journal_since(conn: sqlite3.Connection, after: int, limit: int) -> list[JournalRow]:
    """The journal of every run after the place `after`, in order, at most `limit` entries,
    each with its run's current name, status, message and phases."""
    rows = conn.execute(
        f"SELECT c.pos, c.id, c.seq, c.change, {_SUMMARY} FROM execution_changes c "
        "JOIN executions e ON e.id = c.id WHERE c.pos > ? ORDER BY c.pos LIMIT ?",
        (after, limit),
    )
    found: list[JournalRow] = []
    for pos, run, seq, change, name, status, message, phases in rows:
        doc = {"name": name, "status": status, "message": message}
        doc["phases"] = json.loads(phases) if phases else []
        found.append(JournalRow(int(pos), run, int(seq), json.loads(change), doc))
    return found


def journal_head(conn: sqlite3.Connection) -> int:
    """The place of the journal's latest entry (0 when empty)."""
    row = conn.execute("SELECT MAX(pos) FROM execution_changes").fetchone()
    return int(row[0] or 0)
