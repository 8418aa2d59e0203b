"""The SQLite store's `processes` table: what operators changed about a process at run time,
and what its schedule did."""

from __future__ import annotations

import sqlite3
from typing import Any

from procexec.engine.store.base import PROCESS_OVERRIDES, ProcessState


def process_states(conn: sqlite3.Connection) -> dict[str, ProcessState]:
    rows = conn.execute(
        "SELECT name, enabled, schedule, timezone, last_fire, missed, max_running FROM processes"
    )
    return {
        name: ProcessState(
            name, None if enabled is None else bool(enabled), schedule, zone, last, missed, limit
        )
        for name, enabled, schedule, zone, last, missed, limit in rows
    }


def set_process_state(conn: sqlite3.Connection, name: str, **overrides: Any) -> ProcessState:
    unknown = set(overrides) - set(PROCESS_OVERRIDES)
    if unknown:
        raise KeyError(f"unknown process overrides {sorted(unknown)}")
    conn.execute("INSERT OR IGNORE INTO processes (name) VALUES (?)", (name,))
    if overrides:
        assignments = ", ".join(f"{key} = ?" for key in overrides)
        conn.execute(
            f"UPDATE processes SET {assignments} WHERE name = ?", (*overrides.values(), name)
        )
    return process_states(conn)[name]


def advance_schedule(conn: sqlite3.Connection, name: str, last_fire: str, missed: int = 0) -> bool:
    conn.execute("INSERT OR IGNORE INTO processes (name) VALUES (?)", (name,))
    cursor = conn.execute(
        "UPDATE processes SET last_fire = ?, missed = missed + ?"
        " WHERE name = ? AND (last_fire IS NULL OR last_fire < ?)",
        (last_fire, missed, name, last_fire),
    )
    return cursor.rowcount == 1
