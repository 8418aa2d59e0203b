"""SQLite statements bounded in time: SQLite calls a progress handler every so many virtual
machine steps, and a handler past its deadline stops the statement it is running
(`sqlite3.OperationalError: interrupted`).

- `SQLiteStore.limited` (the API's reads): a `Deadline` on the thread's own connection, looked
  at every `LIMIT_STEP` steps.
- `SQLiteStore.inline` (a call tried on the event loop): gives up after `INLINE_SECONDS`,
  looked at every `INLINE_STEP` steps, on a connection of its own that waits for no lock
  (`Budget`). The store reads both when a call starts.

SQLite looks at the handler between steps, never during one; its `regexp` function (RE2,
linear in the text, `engine.query.regex`) looks at the deadline too, before each match, so that
a scan matching long values stops in time as well (`regexp_under`); under a budget it gives up
at once: the event loop matches no regular expression.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from procexec.engine.query.regex import matches

#: a call under `SQLiteStore.inline()` gives up after INLINE_SECONDS, checked every INLINE_STEP
#: virtual machine steps; a page of a hundred documents on an index takes a fraction of it
INLINE_SECONDS = 0.002
INLINE_STEP = 1000
#: a page under `SQLiteStore.inline()` gives up past this many bytes of documents: copying
#: them is work the steps do not count (a page of long logs is read in few steps)
INLINE_BYTES = 256 * 1024

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

    def regexp(self, pattern: str, value: Any) -> bool:
        """SQLite's `regexp(pattern, value)`, which fails once past the deadline (SQLite then
        stops the statement with `sqlite3.OperationalError`)."""
        if self.progress():
            raise TimeoutError("past the read's deadline")
        return matches(pattern, value)


def regexp_under(local: threading.local) -> Any:
    """SQLite's `regexp` for a thread's own connection: under the deadline of the read the
    thread runs (`local.limit`, set by `SQLiteStore.limited`), if any."""

    def regexp(pattern: str, value: Any) -> bool:
        limit: Deadline | None = getattr(local, "limit", None)
        return matches(pattern, value) if limit is None else limit.regexp(pattern, value)

    return regexp


class Budget(Deadline):
    """A connection for calls under a budget (`SQLiteStore.inline`): it waits for no lock
    (busy timeout 0), and its statements give up once past the deadline of the current call.

    Kept apart from the thread's own connection, so that a call under a budget costs no
    settings switched on and off."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.step = 0
        conn.create_function("regexp", 2, self.regexp, deterministic=True)

    def start(self, seconds: float, step: int) -> None:
        self.restart(seconds)
        if step != self.step:
            self.conn.set_progress_handler(self.progress, step)
            self.step = step

    def regexp(self, pattern: str, value: Any) -> bool:
        """A regular expression is never matched under a budget: the call gives up at its first
        match, to run in a worker thread (whose matching does not hold the interpreter's lock),
        so that the event loop never waits on one."""
        self.gave_up = True
        raise TimeoutError("a regular expression is matched in a worker thread")
