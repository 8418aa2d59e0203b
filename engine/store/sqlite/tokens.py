"""The `tokens` table: API token records (`engine.store.credentials`), and the columns added
to it since its first version (`ensure_token_columns`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from procexec.engine.store.credentials import TokenRecord, names_json, names_of
from procexec.engine.store.sqlite.writers import add_columns

#: the columns added since the table's first version (token_hash, user, scope, created); an
#: earlier token's are NULL: no expiry, not revoked, no limits
ADDED_COLUMNS = ("expires", "revoked", "environments", "processes")
_COLUMNS = "token_hash, user, scope, created, expires, revoked, environments, processes"


def ensure_token_columns(conn: sqlite3.Connection) -> None:
    """Add the columns a table made by an earlier version lacks."""
    add_columns(conn, "tokens", dict.fromkeys(ADDED_COLUMNS, "TEXT"))


def _record(row: tuple[Any, ...]) -> TokenRecord:
    token_hash, user, scope, created, expires, revoked, environments, processes = row
    return TokenRecord(
        token_hash, user, scope, created, expires, revoked, names_of(environments),
        names_of(processes),
    )  # fmt: skip


def add_token(conn: sqlite3.Connection, record: TokenRecord) -> None:
    conn.execute(
        f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.token_hash, record.user, record.scope, record.created, record.expires,
            record.revoked, names_json(record.environments), names_json(record.processes),
        ),
    )  # fmt: skip


def find_token(conn: sqlite3.Connection, token_hash: str) -> TokenRecord | None:
    sql = f"SELECT {_COLUMNS} FROM tokens WHERE token_hash = ?"
    row = conn.execute(sql, (token_hash,)).fetchone()
    return _record(row) if row else None


def token_records(conn: sqlite3.Connection) -> list[TokenRecord]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created, token_hash")
    return [_record(row) for row in rows]


def revoke_token(conn: sqlite3.Connection, token_hash: str, when: str) -> bool:
    sql = "UPDATE tokens SET revoked = ? WHERE token_hash = ? AND revoked IS NULL"
    return conn.execute(sql, (when, token_hash)).rowcount == 1
