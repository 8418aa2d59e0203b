"""Stores written by an earlier version, opened by this one: migrated in place.

`tests/data/store-512ff3d.db` is an SQLite store written by procexec at commit 512ff3d (one
checkpoint a run, no sequence numbers, no change journal): a finished run, a run lost in SEND
after TRANSFORM's checkpoint, and a triggered run. MongoDB's earlier checkpoints (keyed by the
run's id alone) are written as that version wrote them, then the store is opened."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from pathlib import Path

from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import ProcessRegistry
from procexec.engine.query import Query
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import Update
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.trigger_service import TriggerService
from procexec.examples.demo import DEMO
from tests.engine.conftest import MONGO_URI
from tests.engine.runs import Broker, past_lost_timeout

OLD_STORE = Path(__file__).parents[2] / "data" / "store-512ff3d.db"
DONE, LOST, WAITING = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))


def test_an_sqlite_store_of_the_earlier_version_is_migrated_and_its_lost_run_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "procexec.db"
    shutil.copy(OLD_STORE, path)
    before = sqlite3.connect(path)
    keys = [row[1] for row in before.execute("PRAGMA table_info(checkpoints)") if row[5]]
    assert keys == ["id"]  # as the earlier version made it
    before.close()

    store = SQLiteStore(path)
    conn = store._connect()
    keys = [row[1] for row in conn.execute("PRAGMA table_info(checkpoints)") if row[5]]
    assert keys == ["id", "phase"]
    assert store.load_checkpoint(DONE) is not None and store.load_checkpoint(DONE)[0] == 3
    lost = store.load_checkpoint(LOST)
    assert lost is not None and lost[0] == 1
    assert pickle.loads(lost[1]).result == 2  # TRANSFORM's result: DEMO counts its phases
    for execution_id in (DONE, LOST, WAITING):
        found = store.get_at(execution_id)
        assert found is not None and found[1] == 0
    # the list call, its counts and its search read the migrated store as before
    docs, total = store.list(Query(environment="default"))
    assert total == 3 and {doc["_id"] for doc in docs} == {DONE, LOST, WAITING}

    # the lost run is recovered, and resumes at SEND from TRANSFORM's migrated checkpoint
    registry = ProcessRegistry([DEMO])
    triggers = TriggerService(store, registry, Broker())
    housekeeper = Housekeeper(store, registry, triggers, lost_timeout=5, redispatch_after=10)
    housekeeper.run_once(past_lost_timeout())
    earlier = store.get(LOST)
    assert earlier is not None
    runner = PhaseRunner(store, registry, worker_id="new", flush_interval=0.02)
    assert runner.run(LOST) == "failed"  # DEMO told to fail in SEND fails there again
    doc = store.get(LOST)
    assert doc is not None
    assert doc["phases"][:2] == earlier["phases"][:2]  # EXTRACT and TRANSFORM not run again
    assert any("Resuming SEND" in line for line in doc["phases"][2]["log"])
    assert [number for number, _ in store.changes(LOST)][-1] == store.get_at(LOST)[1]  # type: ignore[index]
    # a new run on the migrated store: numbered from its insert on
    assert runner.run(WAITING) == "success"
    assert (store.get_at(WAITING) or ({}, 0))[1] == len(store.changes(WAITING)) > 0
    # the store's writes count the runs now; the triggers that did are gone
    triggers = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    assert "execution_counts_update" not in triggers and "execution_counts_insert" not in triggers
    counted = dict(conn.execute("SELECT status, n FROM execution_totals WHERE n > 0").fetchall())
    actual = conn.execute("SELECT status, count(*) FROM executions GROUP BY status").fetchall()
    assert counted == dict(actual) == {"failed": 1, "success": 2}
    store.close()


def test_opening_a_migrated_store_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "procexec.db"
    shutil.copy(OLD_STORE, path)
    SQLiteStore(path).close()
    store = SQLiteStore(path)
    assert store.load_checkpoint(LOST) is not None
    assert store.update(LOST, Update(set={"message": "x"}, expect_seq=0))
    store.close()


def test_mongodb_checkpoints_of_the_earlier_version_are_migrated(tmp_path: Path) -> None:
    from tests.engine.conftest import mongo_database

    with mongo_database() as fresh:
        # as the earlier version wrote them: keyed by the run alone, no sequence number
        fresh.db["migrations"].delete_many({})
        fresh.checkpoints.insert_one({"_id": "r1", "phase": 1, "blob": b"transformed"})
        fresh.executions.insert_one(
            {"_id": "r1", "name": "DEMO", "status": "running", "_meta": {"worker": "w1"}}
        )
        store = MongoStore(f"mongodb://mongomock/{fresh.db.name}", client=fresh.client)
        assert store.load_checkpoint("r1") == (1, b"transformed")
        assert store.checkpoints.count_documents({"run": {"$exists": False}}) == 0
        found = store.get_at("r1")
        assert found is not None and found[1] == 0
        assert store.update("r1", Update(set={"message": "x"}, expect_seq=0))
        assert store.changes("r1") == [(1, {"set": {"message": "x"}})]
        assert not MONGO_URI or store.db.name == fresh.db.name
