"""The SQLite store's housekeeping indexes hold only the runs they are read for (active runs by
heartbeat, triggered runs by when they were sent, finished runs by when they ended), and every
query of the housekeeping is answered through them; a store made by an earlier version has its
indexes over every run replaced when it opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.domain import ACTIVE, Status
from procexec.engine.store.base import Update
from procexec.engine.store.slots import PARKED
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.store.sqlite.statuses import status_in
from tests.engine.store.documents import execution


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = SQLiteStore(tmp_path / "s.db")
    for n, status in enumerate(["triggered", "running", "waiting", "success", "failed"]):
        store.insert(
            execution(f"r{n}", "DEMO", status, "2021-07-01T10:00:00.000Z"),
            {"heartbeat": "2021-07-01T10:00:00.000Z", "dispatched": "2021-07-01T10:00:00.000Z"},
        )
    yield store
    store.close()


def traced(store: SQLiteStore, call: Any) -> list[str]:
    """The statements `call` runs on the store's connection."""
    seen: list[str] = []
    conn = store._connect()
    conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return [sql for sql in seen if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))]


def plan(conn: sqlite3.Connection, sql: str) -> str:
    params = [None] * sql.count("?")
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_the_lost_run_watch_reads_the_active_runs_index(store: SQLiteStore) -> None:
    found: list[Any] = []
    [sql] = traced(
        store,
        lambda: found.extend(store.stale(sorted(ACTIVE), "heartbeat", "2022-01-01T00:00:00Z")),
    )[:1]
    assert "USING INDEX ix_exec_active_heartbeat" in plan(store._connect(), sql)
    assert sorted(i for i, _ in found) == ["r1", "r2"]


def test_the_outbox_and_the_slots_read_the_triggered_runs_index(store: SQLiteStore) -> None:
    found: list[Any] = []
    [sql] = traced(
        store,
        lambda: found.extend(store.stale(["triggered"], "dispatched", "2022-01-01T00:00:00Z")),
    )[:1]
    assert "USING INDEX ix_exec_triggered_dispatched" in plan(store._connect(), sql)
    assert [i for i, _ in found] == ["r0"]
    store.update("r0", Update(meta={"dispatched": PARKED, "waiting": "DEMO"}))
    assert store.waiting_scopes() == {"DEMO": 1}
    for sql in traced(store, lambda: store.waiting_scopes()) + traced(
        store, lambda: store.unpark("DEMO", "2021-07-01T10:00:01.000Z")
    ):
        if "dispatched" in sql and not sql.startswith("UPDATE"):
            assert "USING INDEX ix_exec_triggered_dispatched" in plan(store._connect(), sql), sql


def test_a_status_change_moves_a_run_between_the_indexes(store: SQLiteStore) -> None:
    conn = store._connect()

    def held(index: str, where: str) -> list[str]:
        rows = conn.execute(f"SELECT id FROM executions INDEXED BY {index} WHERE {where}")
        return sorted(row[0] for row in rows)

    active = status_in(ACTIVE)
    assert held("ix_exec_active_heartbeat", active) == ["r1", "r2"]
    store.update("r1", Update(set={"status": Status.SUCCESS.value}))
    store.update("r0", Update(set={"status": Status.RUNNING.value}))
    assert held("ix_exec_active_heartbeat", active) == ["r0", "r2"]
    assert held("ix_exec_triggered_dispatched", "status = 'triggered'") == []


def test_status_in_takes_the_platform_s_statuses_alone() -> None:
    assert status_in(["waiting", "running"]) == "status IN ('running', 'waiting')"
    assert status_in(["triggered"]) == "status = 'triggered'"
    with pytest.raises(ValueError, match="not statuses"):
        status_in(["running'; DROP TABLE executions; --"])


NEW = ("ix_exec_active_heartbeat", "ix_exec_triggered_dispatched", "ix_exec_finished_at")


def test_a_store_of_an_earlier_version_gets_the_partial_indexes(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    for name in NEW:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("CREATE INDEX ix_exec_status_heartbeat ON executions(status, heartbeat)")
    conn.execute("CREATE INDEX ix_exec_status_dispatched ON executions(status, dispatched)")
    conn.execute("CREATE INDEX ix_exec_finished ON executions(status, coalesce(end_, start))")
    conn.commit()
    SQLiteStore(tmp_path / "s.db").close()
    made = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "ix_exec_active_heartbeat",
        "ix_exec_triggered_dispatched",
        "ix_exec_finished_at",
    } <= made
    assert not made & {"ix_exec_status_heartbeat", "ix_exec_status_dispatched", "ix_exec_finished"}
    conn.close()
