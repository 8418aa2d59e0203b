"""Taking SQLite's write lock promptly.

SQLite's own busy handler waits for another writer by sleeping 1, 2, 5, 10, 15… ms, so a
writer that meets a transaction of a third of a millisecond loses a millisecond or more. The
engine's writes take the lock here instead: tried again after 0.1 ms, then growing pauses of at
most 2 ms, for as long as the connection's own busy timeout allows.

Those pauses are for writers in other processes. The threads of one process (a threads pool's
runs, the API's trigger and request threads, a run's recording thread) queue for the store's
`gate` first, a lock each one waits on without waking: eight threads that each polled for
SQLite's lock spent the interpreter's time failing to take it, and paused past its release."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping

#: how long a write waits for another writer (the engine's connections' busy timeout)
BUSY_SECONDS = 30.0
#: the first pause before trying again, and the longest
FIRST_PAUSE, LONGEST_PAUSE = 0.0001, 0.002


def busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an error says that another connection holds the lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


def begin_immediate(conn: sqlite3.Connection, patience: float) -> None:
    """`BEGIN IMMEDIATE` on `conn`, waiting for another writer in short steps for at most
    `patience` seconds (the connection's busy timeout, which it gets back after); past it,
    SQLite's own error."""
    _when_free(conn, "BEGIN IMMEDIATE", patience)


def write_ahead_log(conn: sqlite3.Connection, patience: float) -> None:
    """`PRAGMA journal_mode=WAL` on `conn`, waiting as `begin_immediate` does: on a new file,
    SQLite answers "database is locked" at once, busy timeout or not, to all but the first of
    the processes that open it together."""
    _when_free(conn, "PRAGMA journal_mode=WAL", patience)


def _when_free(conn: sqlite3.Connection, statement: str, patience: float) -> None:
    """Run `statement`, tried again in short steps for at most `patience` seconds while
    another connection holds the lock it needs."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        give_up = time.monotonic() + patience
        pause = FIRST_PAUSE
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if not busy(exc) or time.monotonic() >= give_up:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(patience * 1000)}")


def gate() -> threading.RLock:
    """A store's write gate: held by a thread of this process from before its `BEGIN
    IMMEDIATE` to after its `COMMIT` or `ROLLBACK`. Reentrant: a write begun inside another
    of the same thread gets SQLite's error, as it did before the gate, rather than waiting on
    itself for ever."""
    return threading.RLock()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, writing: threading.RLock) -> Iterator[None]:
    """A write transaction on `conn`: the store's gate (`writing`), then SQLite's lock
    (`begin_immediate`); committed when the block ends, unless the block rolled it back
    itself (a write that does not apply), and rolled back when the block raises."""
    with writing:
        begin_immediate(conn, BUSY_SECONDS)
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if conn.in_transaction:
            conn.execute("COMMIT")


def add_columns(conn: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """Add to `table` (of a store made by an earlier version) the columns (name: declaration)
    it lacks, in one write transaction that looks again once it holds the lock: processes that
    open such a store at once (an API, a worker, two beats) each found a column missing, and
    all but the first then failed on `ALTER TABLE` (duplicate column name)."""

    def missing() -> list[str]:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        return [column for column in columns if column not in present]

    if not missing():
        return
    begin_immediate(conn, BUSY_SECONDS)
    try:
        for column in missing():
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
