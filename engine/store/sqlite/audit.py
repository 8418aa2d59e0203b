"""The SQLite store's `audit` table: the operators' actions, in the order they were taken."""

from __future__ import annotations

import json
import sqlite3

from procexec.engine.store.base import Action


def record_action(conn: sqlite3.Connection, action: Action) -> None:
    conn.execute(
        "INSERT INTO audit (at, who, action, target, details) VALUES (?, ?, ?, ?, ?)",
        (action.at, action.who, action.action, action.target, json.dumps(dict(action.details))),
    )


def actions(
    conn: sqlite3.Connection,
    *,
    since: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[Action]:
    clauses, values = [], []
    for column, value, operator in (
        ("at", since, ">="),
        ("action", action, "="),
        ("target", target, "="),
    ):
        if value is not None:
            clauses.append(f"{column} {operator} ?")
            values.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT at, who, action, target, details FROM audit {where} ORDER BY seq DESC LIMIT ?",
        (*values, limit),
    )
    return [
        Action(at, who, kind, what, json.loads(details)) for at, who, kind, what, details in rows
    ]
