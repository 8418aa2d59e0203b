"""Taking SQLite's write lock (`engine.store.sqlite.writers`): a writer waits for another in
short steps, and gets it as soon as it is free; past its patience, SQLite's own error; the
connection keeps its busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.store.sqlite.writers import begin_immediate


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def test_a_writer_gets_the_lock_once_the_other_lets_it_go(tmp_path: Path) -> None:
    holder, waiter = connect(tmp_path / "s.db"), connect(tmp_path / "s.db")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    took = threading.Event()

    def wait() -> None:
        begin_immediate(waiter, 10)
        took.set()
        waiter.execute("INSERT INTO t VALUES (2)")
        waiter.execute("COMMIT")

    thread = threading.Thread(target=wait)
    thread.start()
    assert not took.wait(0.2)  # held: it waits
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("COMMIT")
    thread.join(10)
    assert took.is_set()
    assert [row[0] for row in holder.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_past_its_patience_a_writer_gets_sqlites_error(tmp_path: Path) -> None:
    holder, waiter = connect(tmp_path / "s.db"), connect(tmp_path / "s.db")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, 0.05)
    assert not waiter.in_transaction
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 50
    holder.execute("ROLLBACK")


def test_a_batch_of_inserts_is_one_transaction_and_a_duplicate_spoils_none(
    tmp_path: Path,
) -> None:
    from procexec.engine.errors import DuplicateExecution
    from procexec.engine.store.sqlite import SQLiteStore
    from tests.engine.store.documents import execution

    store = SQLiteStore(tmp_path / "s.db")
    statements: list[str] = []
    store._connect().set_trace_callback(statements.append)
    with store.batch():
        store.insert(execution("a", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
        with pytest.raises(DuplicateExecution):
            store.insert(execution("a", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
        store.insert(execution("b", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert store.get("a") is not None and store.get("b") is not None
    with pytest.raises(RuntimeError), store.batch():
        store.insert(execution("c", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
        raise RuntimeError("a bug between two inserts")
    assert store.get("c") is None  # nothing of a batch that failed is kept
    counted = store._connect().execute("SELECT sum(n) FROM execution_totals").fetchone()[0]
    assert counted == 2
    store.close()


def test_threads_of_one_process_queue_for_the_store_instead_of_polling_sqlite(
    tmp_path: Path, traced_sql: list[str]
) -> None:
    """Eight threads writing at once: each `BEGIN IMMEDIATE` is tried once and takes the
    lock, since a thread waits for the store's gate rather than for SQLite's lock (a failed
    attempt is traced too, and was most of them)."""
    from procexec.engine.store.base import Update
    from procexec.engine.store.sqlite import SQLiteStore
    from tests.engine.store.documents import execution

    statements = traced_sql
    store = SQLiteStore(tmp_path / "s.db")
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        store.insert(execution(f"r{n}", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
        for i in range(30):
            assert store.update(f"r{n}", Update(set={"message": f"step {i}"}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    begun = statements.count("BEGIN IMMEDIATE")
    ended = statements.count("COMMIT") + statements.count("ROLLBACK")
    assert ended >= 8 * 31
    assert begun == ended
    assert all(store.get(f"r{n}")["message"] == "step 29" for n in range(8))  # type: ignore[index]
    store.close()


def test_a_write_begun_inside_another_of_its_thread_fails_rather_than_waits(
    tmp_path: Path,
) -> None:
    """The gate is the thread's own already: SQLite refuses the nested transaction at once."""
    from procexec.engine.store.base import Update
    from procexec.engine.store.sqlite import SQLiteStore
    from tests.engine.store.documents import execution

    store = SQLiteStore(tmp_path / "s.db")
    store.insert(execution("a", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))
    raised: list[BaseException] = []

    def nested() -> None:
        try:
            with store.batch():
                store.update("a", Update(set={"message": "inside"}))
        except Exception as exc:
            raised.append(exc)
        finally:
            store.close()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the nested write waited on its own thread's gate"
    assert raised and "within a transaction" in str(raised[0])
    store.insert(execution("b", "DEMO", "triggered", "2021-07-01T10:00:00.000Z"))  # gate free
    assert store.get("a")["message"] != "inside"  # type: ignore[index]
    store.close()


def _open(path: str, start: Any) -> None:
    from procexec.engine.store.sqlite import SQLiteStore

    start.wait()
    SQLiteStore(path).close()


def test_processes_opening_a_new_store_at_once_each_open_it(tmp_path: Path) -> None:
    """Four processes starting together on a new store (an API, a worker, two beats) all open
    it. One of them used to fail, on `PRAGMA journal_mode=WAL` (database is locked, at once)
    or on `ALTER TABLE` (duplicate column name): each now waits for the lock as a writer
    does, and adds the columns it finds missing once it holds it."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for trial in range(5):
        path = str(tmp_path / f"s{trial}.db")
        start = context.Barrier(4)
        openers = [context.Process(target=_open, args=(path, start)) for _ in range(4)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
        assert [opener.exitcode for opener in openers] == [0, 0, 0, 0], trial
