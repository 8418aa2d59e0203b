"""The embedded store: one SQLite file, WAL, the document as JSON with indexed generated columns.

Safe across threads (a connection per thread) and processes (WAL, `BEGIN IMMEDIATE` around
every read-modify-write, so two writers never lose each other's updates).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from procexec.engine import answers, deadline
from procexec.engine.errors import DuplicateExecution, QueryTimeout, StoreUnavailable
from procexec.engine.private_files import private_store_file
from procexec.engine.query import Query, project_document
from procexec.engine.store.base import (
    JSON_META_KEYS,
    META_KEYS,
    ExecutionStore,
    InlineBudgetExceeded,
    JournalRow,
    StoreReport,
    Update,
    apply_update,
    too_large,
    translate_errors,
)
from procexec.engine.store.sqlite import (
    aggregate,
    counters,
    deadlines,
    fields,
    health,
    pages,
    runs,
    schema,
)
from procexec.engine.store.sqlite.compiler import too_large_for_sqlite
from procexec.engine.store.sqlite.deadlines import LIMIT_STEP, Budget, Deadline
from procexec.engine.store.sqlite.side_tables import SideTables
from procexec.engine.store.sqlite.slots import SQLiteSlots
from procexec.engine.store.sqlite.statuses import status_in
from procexec.engine.store.sqlite.writers import (
    BUSY_SECONDS,
    begin_immediate,
    gate,
    transaction,
    write_ahead_log,
)

__all__ = ["SQLiteStore"]


#: a document as stored: compact JSON (the list call serves it as it is, and updates rewrite it)
compact_json = json.JSONEncoder(separators=(",", ":")).encode


@translate_errors(
    (sqlite3.OperationalError, sqlite3.DatabaseError), "SQLite", refused=too_large_for_sqlite
)
class SQLiteStore(SideTables, SQLiteSlots, ExecutionStore):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, prepare: bool = True) -> None:
        """The store in the file `path`. With `prepare` (as a service opens it), the file, its
        tables and indexes are made when missing; without (`procexec store check`), the store
        is only read."""
        self.path = str(path)
        self._local = threading.local()
        self._writing = gate()
        if not prepare:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_store_file(Path(self.path))
        conn = self._connect()
        schema.ensure_schema(conn)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(busy_seconds=BUSY_SECONDS)
        return conn

    def _open(self, busy_seconds: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=busy_seconds, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store {self.path}: {exc}") from exc
        write_ahead_log(conn, busy_seconds)
        conn.execute("PRAGMA synchronous=NORMAL")
        regexp = deadlines.regexp_under(self._local)
        conn.create_function("regexp", 2, regexp, deterministic=True)
        conn.create_collation(aggregate.COLLATION, aggregate.compare_json)
        return conn

    def insert(self, doc: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
        meta = schema.meta_columns(meta)
        columns = ", ".join(["id", "doc", *meta])
        conn = self._connect()
        own = not conn.in_transaction  # else in the caller's (a bulk load)
        try:
            with transaction(conn, self._writing) if own else contextlib.nullcontext():
                conn.execute(
                    f"INSERT INTO executions ({columns}) "
                    f"VALUES ({', '.join('?' * (2 + len(meta)))})",
                    (doc["_id"], compact_json(doc), *meta.values()),
                )
                counters.bump(conn, counters.keys(doc), +1)
        except sqlite3.IntegrityError:
            raise DuplicateExecution(f"execution {doc['_id']} exists already") from None

    def get_meta(self, execution_id: str) -> dict[str, Any]:
        row = (
            self._connect()
            .execute(f"SELECT {', '.join(META_KEYS)} FROM executions WHERE id = ?", (execution_id,))
            .fetchone()
        )
        if row is None:
            return {}
        meta = dict(zip(META_KEYS, row, strict=True))
        for key in JSON_META_KEYS:
            meta[key] = json.loads(meta[key]) if meta[key] else None
        return meta

    def get(self, execution_id: str, environment: str | None = None) -> dict[str, Any] | None:
        sql, params = "SELECT doc FROM executions WHERE id = ?", [execution_id]
        if environment is not None:
            sql += " AND environment = ?"
            params.append(environment)
        row = self._connect().execute(sql, params).fetchone()
        if row is None:
            return None
        answers.fits(len(row[0]))  # under an API answer's limit, before it is parsed
        return json.loads(row[0])

    def get_at(self, execution_id: str) -> tuple[dict[str, Any], int] | None:
        return runs.get_at(self._connect(), execution_id)

    def holder(self, execution_id: str) -> tuple[str | None, str | None]:
        return runs.holder(self._connect(), execution_id)

    def update(self, execution_id: str, change: Update) -> bool:
        conn = self._connect()
        with transaction(conn, self._writing):
            if not self._apply(conn, execution_id, change):
                conn.execute("ROLLBACK")
                return False
        return True

    @staticmethod
    def _apply(conn: sqlite3.Connection, execution_id: str, change: Update) -> bool:
        """`update`'s work, in the caller's transaction; False where it does not apply."""
        row = conn.execute(
            "SELECT doc, worker, seq FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
        if row is None or (change.expect_seq is not None and row[2] != change.expect_seq):
            return False
        if change.expect_worker is not None and row[1] != change.expect_worker:
            return False
        changes_document = change.changes_document
        if change.expect_status is not None or changes_document:
            doc = json.loads(row[0])
            if change.expect_status is not None and doc.get("status") not in change.expect_status:
                return False
        meta = schema.meta_columns(change.meta)
        if changes_document:
            before = counters.keys(doc)
            apply_update(doc, change)
            after = counters.keys(doc)
            if before != after:
                counters.bump(conn, before, -1)
                counters.bump(conn, after, +1)
            seq = row[2] + 1
            meta = {"doc": compact_json(doc), "seq": seq, **meta}
            conn.execute(
                "INSERT INTO execution_changes (id, seq, change, pos) VALUES (?, ?, ?, "
                "(SELECT COALESCE(MAX(pos), 0) + 1 FROM execution_changes))",
                (execution_id, seq, compact_json(change.journal())),
            )
        if meta:  # else bookkeeping only (a heartbeat): the document stays as it is
            conn.execute(
                f"UPDATE executions SET {', '.join(f'{k} = ?' for k in meta)} WHERE id = ?",
                (*meta.values(), execution_id),
            )
        for index, blob in change.checkpoints:
            runs.keep(conn, execution_id, index, blob)
        return True

    def changes(
        self, execution_id: str, after: int = 0
    ) -> builtins.list[tuple[int, dict[str, Any]]]:
        return runs.changes(self._connect(), execution_id, after)

    def journal_since(self, after: int, limit: int = 500) -> builtins.list[JournalRow]:
        return runs.journal_since(self._connect(), after, limit)

    def journal_head(self) -> int:
        return runs.journal_head(self._connect())

    def list(self, query: Query) -> tuple[list[dict[str, Any]], int]:
        docs, total = self.list_json(query)
        return [json.loads(doc) for doc in deadline.checked(docs, 64)], total

    def list_json(self, query: Query) -> tuple[builtins.list[bytes], int]:
        shape: pages.Shape | None = None
        if query.project or query.exclude:

            def shape(stored: bytes) -> bytes:  # each document projected as it is read
                doc = project_document(json.loads(stored), query.project, query.exclude)
                return compact_json(doc).encode()

        budget: Budget | None = getattr(self._local, "budget", None)
        if budget is not None and getattr(self._local, "conn", None) is budget.conn:  # inline()
            shape = pages.bytes_under(deadlines.INLINE_BYTES, shape)
        return pages.list_page(self._connect(), query, shape)  # else the stored JSON as it is

    def distinct(self, query: Query) -> builtins.list[Any]:
        return fields.distinct(self._connect(), query)

    def fieldinfo(self, query: Query) -> builtins.list[dict[str, Any]]:
        return fields.fieldinfo(self._connect(), query)

    def aggregate(self, query: Query) -> builtins.list[dict[str, Any]]:
        return aggregate.aggregate(self._connect(), query)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        conn = self._connect()
        if conn.in_transaction:  # within a batch already: its own
            yield
            return
        with self._writing:
            try:
                begin_immediate(conn, BUSY_SECONDS)
            except sqlite3.Error as exc:  # as every other call: the store is unavailable
                raise StoreUnavailable(f"the SQLite store is unavailable: {exc}") from exc
            try:
                yield
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):  # closed meanwhile: nothing to undo
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"the SQLite store is unavailable: {exc}") from exc
                raise

    def inline(self) -> contextlib.AbstractContextManager[None]:
        return self._bounded()

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """This thread's calls, until the block ends, on its budgeted connection."""
        budget: Budget | None = getattr(self._local, "budget", None)
        if budget is None:
            budget = self._local.budget = Budget(self._open(busy_seconds=0))
        budget.start(deadlines.INLINE_SECONDS, deadlines.INLINE_STEP)
        outer = getattr(self._local, "conn", None)
        self._local.conn = budget.conn
        try:
            yield
        except (StoreUnavailable, sqlite3.OperationalError) as exc:
            cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
            if budget.gave_up or (
                isinstance(cause, sqlite3.OperationalError)
                and any(word in str(cause) for word in ("locked", "busy"))
            ):
                raise InlineBudgetExceeded from exc
            if isinstance(exc, sqlite3.OperationalError):
                if too_large_for_sqlite(exc):
                    raise too_large("SQLite", exc) from exc
                raise StoreUnavailable(f"the SQLite store is unavailable: {exc}") from exc
            raise
        finally:
            self._local.conn = outer
            if budget.conn.in_transaction:
                budget.conn.execute("ROLLBACK")

    def _limited(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        if getattr(self._local, "limit", None) is not None:
            return contextlib.nullcontext()  # nested: the outer limit holds
        budget: Budget | None = getattr(self._local, "budget", None)
        if budget is not None and getattr(self._local, "conn", None) is budget.conn:
            return contextlib.nullcontext()  # under `inline()`, whose budget is far tighter
        return self._deadline_block(seconds)

    @contextlib.contextmanager
    def _deadline_block(self, seconds: float) -> Iterator[None]:
        """This thread's calls, until the block ends, stopped once past `seconds`: a progress
        handler on the thread's own connection, set for the block alone (the engine's writes,
        on the same connection before or after, never meet it). A transaction a read left open
        when it was stopped is rolled back, and the connection serves the next call as usual."""
        conn = self._connect()
        outside = conn.in_transaction  # a transaction of the caller's, not the block's
        left = deadline.remaining()  # what the read's deadline leaves, when it has one
        limit = self._local.limit = Deadline(seconds if left is None else min(seconds, left))
        conn.set_progress_handler(limit.progress, LIMIT_STEP)
        try:
            yield
        except (StoreUnavailable, sqlite3.OperationalError) as exc:
            if limit.gave_up:
                raise QueryTimeout(seconds) from exc
            raise
        finally:
            self._local.limit = None
            conn.set_progress_handler(None, 0)
            if conn.in_transaction and not outside:
                conn.execute("ROLLBACK")

    def stale(
        self, statuses: Sequence[str], meta_key: str, before: str, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        if meta_key not in META_KEYS:
            raise KeyError(f"unknown meta key {meta_key!r}")
        rows = (  # the statuses as the partial indexes hold them (`statuses`), which they read
            self._connect()
            .execute(
                f"SELECT id FROM executions WHERE {status_in(statuses)}"
                f" AND ({meta_key} IS NULL OR {meta_key} < ?) ORDER BY {meta_key} LIMIT ?",
                (before, limit),
            )
            .fetchall()
        )
        return [(row[0], self.get_meta(row[0])) for row in rows]

    def ping(self) -> None:
        self._connect().execute("SELECT 1 FROM executions LIMIT 1").fetchall()

    def check(self, timeout: float = 5.0) -> StoreReport:
        if self.path == ":memory:":  # a database of this thread's connection alone
            return health.check(self._connect())
        try:  # a connection of its own, which can write nothing
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout)
        except sqlite3.Error as exc:
            return StoreReport("sqlite", reachable=False, error=str(exc))
        try:
            return health.check(conn)
        finally:
            conn.close()

    def release_thread(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this thread's connections."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        budget = getattr(self._local, "budget", None)
        if budget is not None:
            budget.conn.close()
            self._local.budget = None
