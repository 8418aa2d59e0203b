"""SQLite statements bounded in time: SQLite calls a progress handler every so many virtual
machine steps, and a handler past its deadline stops the statement it is running
(`sqlite3.OperationalError: interrupted`).

- `SQLiteStore.limited` (the API's reads): a `Deadline` on the thread's own connection, looked
  at every `LIMIT_STEP` steps.
- `SQLiteStore.inline` (a call tried on the event loop): gives up after `INLINE_SECONDS`,
  looked at every `INLINE_STEP` steps, on a connection of its own that waits for no lock
  (`Budget`). The store reads both when a call starts.
"""

from __future__ import annotations

import sqlite3
import time

#: a call under `SQLiteStore.inline()` gives up after INLINE_SECONDS, checked every INLINE_STEP
#: virtual machine steps; a page of a hundred documents on an index takes a fraction of it
INLINE_SECONDS = 0.002
INLINE_STEP = 1000

#: a read under `SQLiteStore.limited` looks at the clock every LIMIT_STEP virtual machine steps
#: (a few microseconds of work; the look costs well under 1% of it)
LIMIT_STEP = 1000


class Deadline:
    """A progress handler that gives up once past a deadline: SQLite then stops the statement
    it is running, which fails with `sqlite3.OperationalError: interrupted`."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.restart(seconds)

    def restart(self, seconds: float) -> None:
        """Give up `seconds` from now (and not before)."""
        self.deadline = time.perf_counter() + seconds
        self.gave_up = False

    def progress(self) -> int:
        self.gave_up = self.gave_up or time.perf_counter() > self.deadline
        return 1 if self.gave_up else 0


class Budget(Deadline):
    """A connection for calls under a budget (`SQLiteStore.inline`): it waits for no lock
    (busy timeout 0), and its statements give up once past the deadline of the current call.

    Kept apart from the thread's own connection, so that a call under a budget costs no
    settings switched on and off."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.step = 0

    def start(self, seconds: float, step: int) -> None:
        self.restart(seconds)
        if step != self.step:
            self.conn.set_progress_handler(self.progress, step)
            self.step = step
