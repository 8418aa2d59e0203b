"""Retention of finished runs, on every store: `purge` deletes finished runs that ended before a
cutoff (by their start when they have no end), with their checkpoints, never an active run, and
the totals the list call serves stay right; the housekeeping purges by PROCEXEC_RETENTION_DAYS.
The SQLite counters are compared with a full recount; MongoDB's TTL indexes and the hidden date
they read are in tests/engine/store/test_retention_mongo.py."""

from __future__ import annotations

import copy
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService
from procexec.examples.demo import DEMO
from tests.engine.runs import Broker
from tests.engine.store.documents import PROD, execution
from tests.engine.store.test_query_sqlite import out_of_step

CUTOFF = "2024-01-01T00:00:00.000Z"
OLD = "2023-12-01T10:00:00.000Z"
OLD_END = "2023-12-01T10:05:00.000Z"
RECENT = "2024-01-10T10:00:00.000Z"

#: (id, status, start, end): which of them a purge before CUTOFF deletes is in EXPIRED
RUNS = [
    ("old-success", "success", OLD, OLD_END),
    ("old-warning", "warning", OLD, OLD_END),
    ("old-failed", "failed", OLD, OLD_END),
    ("old-no-end", "failed", OLD, None),  # by its start
    ("ended-at-cutoff", "success", OLD, CUTOFF),  # not before it
    ("ended-after", "success", OLD, RECENT),  # started long ago, ended since
    ("recent", "success", RECENT, RECENT),
    ("old-triggered", "triggered", OLD, None),
    ("old-running", "running", OLD, None),
    ("old-waiting", "waiting", OLD, None),
    ("old-retrying", "retrying", OLD, None),
]
EXPIRED = {"old-success", "old-warning", "old-failed", "old-no-end"}
ALL_IDS = {run[0] for run in RUNS}


def load(store: ExecutionStore, environment: str = PROD) -> None:
    for execution_id, status, start, end in RUNS:
        doc = execution(execution_id, "DEMO", status, start, end=end, environment=environment)
        doc["message"] = f"retention {execution_id}"
        # a heartbeat and a dispatch mark: the housekeeping's other steps leave them alone
        store.insert(doc, meta={"heartbeat": start, "dispatched": start})
        store.save_checkpoint(execution_id, 0, execution_id.encode())


def present(store: ExecutionStore) -> set[str]:
    rows, total = store.list(parse_query([("_limit", "-1")], PROD))
    assert total == len(rows)
    return {row["_id"] for row in rows}


def total(store: ExecutionStore, *params: tuple[str, str]) -> int:
    return store.list(parse_query([*params, ("_limit", "0")], PROD))[1]


def test_purge_deletes_finished_runs_ended_before_the_cutoff_and_never_an_active_one(
    store: ExecutionStore,
) -> None:
    load(store)
    assert present(store) == ALL_IDS
    assert store.purge(CUTOFF, 100) == len(EXPIRED)
    assert present(store) == ALL_IDS - EXPIRED
    for execution_id in ALL_IDS:
        gone = execution_id in EXPIRED
        assert (store.get(execution_id) is None) == gone, execution_id
        assert (store.get_meta(execution_id) == {}) == gone, execution_id
        checkpoint = store.load_checkpoint(execution_id)
        assert checkpoint == (None if gone else (0, execution_id.encode())), execution_id
    assert store.purge(CUTOFF, 100) == 0


def test_purge_deletes_at_most_limit_a_call(store: ExecutionStore) -> None:
    load(store)
    assert store.purge(CUTOFF, 0) == 0
    assert store.purge(CUTOFF, 3) == 3
    assert len(ALL_IDS - present(store)) == 3
    assert store.purge(CUTOFF, 3) == 1
    assert store.purge(CUTOFF, 3) == 0
    assert present(store) == ALL_IDS - EXPIRED


def test_after_a_purge_the_totals_counts_and_searches_agree_with_what_is_left(
    store: ExecutionStore,
) -> None:
    load(store)
    store.insert(execution("staged", "DEMO", "success", OLD, end=OLD_END, environment="staging"))
    assert total(store) == len(ALL_IDS)
    assert total(store, ("status", "success")) == 4
    december = ("start", "range(2023-12-01,2023-12-31)")
    assert total(store, december) == len(ALL_IDS) - 1
    assert store.purge(CUTOFF, 100) == len(EXPIRED) + 1  # every environment
    left = ALL_IDS - EXPIRED
    assert total(store) == len(left)
    assert total(store, ("status", "success")) == 3
    assert total(store, ("status", "failed")) == 0
    assert total(store, december) == len(left) - 1
    assert total(store, december, ("status", "success")) == 2
    assert total(store, ("_search", "retention")) == len(left)
    assert total(store, ("_search", "old-success")) == 0
    buckets = store.fieldinfo(parse_query([("_fieldinfo", "status")], PROD))
    assert {row["_id"]: row["count"] for row in buckets} == {
        "success": 3, "triggered": 1, "running": 1, "waiting": 1, "retrying": 1
    }  # fmt: skip
    assert store.list(parse_query([("_limit", "0")], "staging"))[1] == 0


def test_a_run_finished_by_an_update_is_purged_by_the_end_it_was_given(
    store: ExecutionStore,
) -> None:
    store.insert(execution("claimed", "DEMO", "triggered", OLD))
    store.insert(execution("finished", "DEMO", "triggered", OLD))
    store.insert(execution("finished-late", "DEMO", "triggered", OLD))
    for execution_id in ("claimed", "finished", "finished-late"):
        assert store.update(execution_id, Update(set={"status": "running"}))
    assert store.update("finished", Update(set={"status": "success", "end": OLD_END}))
    assert store.update("finished-late", Update(set={"status": "failed", "end": RECENT}))
    assert store.purge(CUTOFF, 100) == 1
    assert present(store) == {"claimed", "finished-late"}


def test_the_sqlite_counters_match_a_full_recount_after_purges(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    try:
        for environment in (PROD, "staging"):
            for execution_id, status, start, end in RUNS:
                doc = execution(
                    f"{environment}-{execution_id}", "DEMO", status, start, end=end,
                    environment=environment,
                )  # fmt: skip
                store.insert(doc)
        conn = store._connect()
        counted = conn.execute("SELECT sum(n) FROM execution_totals").fetchone()[0]
        assert counted == 2 * len(RUNS)
        assert not out_of_step(conn)
        while store.purge(CUTOFF, 3):
            assert not out_of_step(conn)
        assert not out_of_step(conn)
        counted = conn.execute("SELECT sum(n) FROM execution_totals").fetchone()[0]
        assert counted == 2 * (len(RUNS) - len(EXPIRED))
        months = dict(
            conn.execute(
                "SELECT month, sum(n) FROM execution_months WHERE environment = ? GROUP BY month",
                (PROD,),
            ).fetchall()
        )
        assert months == {"2023-12": len(RUNS) - 1 - len(EXPIRED), "2024-01": 1}
    finally:
        store.close()


def test_the_purge_of_sqlite_uses_its_index(tmp_path: Any) -> None:
    """A purge finds expired runs through an index, not by reading every document."""
    store = SQLiteStore(tmp_path / "x.db")
    try:
        conn = store._connect()
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        store.purge(CUTOFF, 10)
        conn.set_trace_callback(None)
        [select] = [sql for sql in seen if sql.startswith("SELECT id FROM executions")]
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {select}"))
        assert "USING INDEX ix_exec_finished_at" in plan, plan
    finally:
        store.close()


def test_a_sqlite_purge_with_nothing_to_delete_takes_no_write_lock(tmp_path: Any) -> None:
    """Every housekeeping pass purges; one that finds nothing must not wait on a writer."""
    store = SQLiteStore(tmp_path / "x.db")
    load(store)
    store.purge(CUTOFF, 100)
    writer = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        assert store.purge(CUTOFF, 100) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        store.close()


# --- the housekeeping -------------------------------------------------------------------------


def keeper(store: ExecutionStore, days: float, **options: Any) -> Housekeeper:
    registry = ProcessRegistry([DEMO])
    return Housekeeper(
        store,
        registry,
        TriggerService(store, registry, Broker()),
        lost_timeout=1e9,  # nothing here is a lost run or an undelivered trigger
        redispatch_after=1e9,
        retention_days=days,
        **options,
    )


#: a clock 30 days after CUTOFF: a retention of 30 days purges what ended before CUTOFF
NOW = datetime(2024, 1, 31, tzinfo=UTC)


def test_the_housekeeping_purges_by_the_retention_setting(store: ExecutionStore) -> None:
    load(store)
    assert keeper(store, 0).run_once(NOW + timedelta(days=3650)).purged == 0
    assert present(store) == ALL_IDS  # 0: kept for ever
    assert keeper(store, 61).run_once(NOW).purged == 0  # all ended within 61 days
    assert present(store) == ALL_IDS
    assert keeper(store, 30).run_once(NOW).purged == len(EXPIRED)
    assert present(store) == ALL_IDS - EXPIRED
    # ten years on, every finished run is past it, and the active ones are still there
    assert keeper(store, 30).run_once(NOW + timedelta(days=3650)).purged == 3
    assert present(store) == {"old-triggered", "old-running", "old-waiting", "old-retrying"}


def test_the_housekeeping_purges_in_batches_and_a_bounded_number_a_pass(
    store: ExecutionStore,
) -> None:
    load(store)
    housekeeper = keeper(store, 30, batch=1, purge_batches=3)
    assert housekeeper.run_once(NOW).purged == 3
    assert housekeeper.run_once(NOW).purged == 1
    assert housekeeper.run_once(NOW).purged == 0
    assert present(store) == ALL_IDS - EXPIRED


@pytest.mark.parametrize(
    ("value", "days"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("30", 30.0), ("0.5", 0.5)]
)
def test_the_retention_setting(value: str | None, days: float) -> None:
    env = {} if value is None else {"PROCEXEC_RETENTION_DAYS": value}
    assert Settings.from_env(env).retention_days == days


@pytest.mark.parametrize("value", ["-1", "thirty"])
def test_a_bad_retention_setting_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="PROCEXEC_RETENTION_DAYS"):
        Settings.from_env({"PROCEXEC_RETENTION_DAYS": value})


def test_purge_leaves_the_documents_it_keeps_as_they_were(store: ExecutionStore) -> None:
    load(store)
    before = {execution_id: copy.deepcopy(store.get(execution_id)) for execution_id in ALL_IDS}
    store.purge(CUTOFF, 100)
    for execution_id in ALL_IDS - EXPIRED:
        assert store.get(execution_id) == before[execution_id]
    assert iso_ms(NOW - timedelta(days=30)) == CUTOFF
