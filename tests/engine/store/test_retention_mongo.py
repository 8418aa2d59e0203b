"""Retention on the MongoDB store: the BSON date a TTL index reads (`_meta.ended`), set in the
update that finishes a run and never served, the same date on the run's checkpoint, and the TTL
indexes `keep_for` makes, changes and drops. On mongomock (no `collMod`) the change of an index
is checked by the command sent; on a real server (PROCEXEC_TEST_MONGODB_URI), by the index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from procexec.engine.query import parse_query
from procexec.engine.store.base import Update
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.mongo_retention import TTL_INDEX
from tests.engine.conftest import MONGO_URI
from tests.engine.store.documents import PROD, execution

START = "2023-12-01T10:00:00.000Z"
END = "2023-12-01T10:05:00.123Z"
ENDED = datetime(2023, 12, 1, 10, 5, 0, 123000)
DAY = 86400


def raw(store: MongoStore, execution_id: str) -> dict[str, Any]:
    found = store.executions.find_one({"_id": execution_id})
    assert found is not None
    return dict(found)


def hidden_date(store: MongoStore, execution_id: str) -> Any:
    return raw(store, execution_id).get("_meta", {}).get("ended")


def ttl(store: MongoStore, collection: str) -> dict[str, Any] | None:
    index: dict[str, Any] | None = store.db[collection].index_information().get(TTL_INDEX)
    return index


def test_the_update_that_finishes_a_run_dates_it_and_its_checkpoint(mongo: MongoStore) -> None:
    mongo.insert(execution("r1", "DEMO", "triggered", START))
    assert hidden_date(mongo, "r1") is None
    assert mongo.update("r1", Update(set={"status": "running"}, meta={"worker": "w1"}))
    mongo.save_checkpoint("r1", 0, b"first")
    assert hidden_date(mongo, "r1") is None  # active: never dated
    finish = Update(
        set={"status": "success", "message": "done", "end": END},
        expect_status=frozenset({"running"}),
        expect_worker="w1",
    )
    assert mongo.update("r1", finish)
    assert hidden_date(mongo, "r1") == ENDED
    checkpoint = mongo.checkpoints.find_one({"run": "r1", "phase": 0})
    assert checkpoint is not None and checkpoint["ended"] == ENDED
    # a checkpoint written late (a worker that lost the run) takes the date
    mongo.save_checkpoint("r1", 1, b"late")
    checkpoint = mongo.checkpoints.find_one({"run": "r1", "phase": 1})
    assert checkpoint is not None and checkpoint["ended"] == ENDED
    assert mongo.load_checkpoint("r1") == (1, b"late")
    # a conditional update that does not apply dates nothing
    mongo.insert(execution("r2", "DEMO", "triggered", START))
    assert not mongo.update("r2", Update(set={"status": "failed", "end": END}, expect_worker="x"))
    assert hidden_date(mongo, "r2") is None


def test_a_run_set_back_to_an_active_status_loses_its_date(mongo: MongoStore) -> None:
    mongo.insert(execution("r1", "DEMO", "failed", START, end=END))
    assert hidden_date(mongo, "r1") == ENDED
    assert mongo.update("r1", Update(set={"status": "triggered"}))
    assert hidden_date(mongo, "r1") is None
    assert mongo.purge("2030-01-01T00:00:00.000Z", 10) == 0


def test_purge_leaves_an_active_run_even_when_it_bears_a_date(mongo: MongoStore) -> None:
    """The purge asks for a finished status as well as a date: the date alone is not trusted."""
    mongo.insert(execution("active", "DEMO", "running", START))
    mongo.executions.update_one({"_id": "active"}, {"$set": {"_meta.ended": ENDED}})
    assert mongo.purge("2030-01-01T00:00:00.000Z", 10) == 0
    assert mongo.get("active") is not None


def test_a_run_stored_finished_is_dated_by_its_end_or_its_start(mongo: MongoStore) -> None:
    mongo.insert(execution("ended", "DEMO", "warning", START, end=END))
    mongo.insert(execution("no-end", "DEMO", "failed", START))
    mongo.insert(execution("active", "DEMO", "running", START))
    assert hidden_date(mongo, "ended") == ENDED
    assert hidden_date(mongo, "no-end") == datetime(2023, 12, 1, 10, 0)
    assert hidden_date(mongo, "active") is None


def test_the_date_is_never_served(mongo: MongoStore) -> None:
    mongo.insert(execution("r1", "DEMO", "running", START), meta={"worker": "w1"})
    assert mongo.update("r1", Update(set={"status": "success", "end": END}))
    assert hidden_date(mongo, "r1") == ENDED
    doc = mongo.get("r1")
    assert doc is not None and "_meta" not in doc and "ended" not in doc
    assert "ended" not in mongo.get_meta("r1")
    for params in ([], [("_project", "_id,status,end")], [("_project", "-phases")]):
        rows, _ = mongo.list(parse_query([*params, ("_limit", "-1")], PROD))
        assert rows and all("_meta" not in row and "ended" not in row for row in rows), params
    [served] = mongo.list_json(parse_query([], PROD))[0]
    assert b"ended" not in served and b"_meta" not in served


def test_keep_for_makes_the_ttl_indexes_idempotently(mongo: MongoStore) -> None:
    assert ttl(mongo, "executions") is None
    mongo.keep_for(0)  # for ever: no index
    assert ttl(mongo, "executions") is None and ttl(mongo, "checkpoints") is None
    for _ in range(2):  # a second start with the same setting changes nothing
        mongo.keep_for(30)
        executions, checkpoints = ttl(mongo, "executions"), ttl(mongo, "checkpoints")
        assert executions is not None and checkpoints is not None
        assert [tuple(key) for key in executions["key"]] == [("_meta.ended", 1)]
        assert [tuple(key) for key in checkpoints["key"]] == [("ended", 1)]
        assert executions["expireAfterSeconds"] == checkpoints["expireAfterSeconds"] == 30 * DAY
    mongo.keep_for(0)  # retention turned off: the indexes go, nothing expires
    assert ttl(mongo, "executions") is None and ttl(mongo, "checkpoints") is None
    mongo.keep_for(0.5)
    executions = ttl(mongo, "executions")
    assert executions is not None and executions["expireAfterSeconds"] == DAY // 2


def test_keep_for_changes_the_seconds_of_an_index_in_place(
    mongo: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo.keep_for(30)
    if MONGO_URI:  # a real server: collMod changes the index
        mongo.keep_for(7)
        for collection in ("executions", "checkpoints", "changes"):
            index = ttl(mongo, collection)
            assert index is not None and index["expireAfterSeconds"] == 7 * DAY
        return
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        mongo.db, "command", lambda *args, **kwargs: sent.append((*args, kwargs)), raising=False
    )
    mongo.keep_for(7)
    assert sent == [
        ("collMod", name, {"index": {"name": TTL_INDEX, "expireAfterSeconds": 7 * DAY}})
        for name in ("executions", "checkpoints", "changes")
    ]


def test_keep_for_dates_the_runs_and_checkpoints_stored_before_dates_were_kept(
    mongo: MongoStore,
) -> None:
    for doc in (
        execution("old-ended", "DEMO", "success", START, end=END),
        execution("old-no-end", "DEMO", "failed", START),
        execution("old-active", "DEMO", "running", START),
    ):
        mongo.executions.insert_one({**doc, "_meta": {}})  # as an earlier version stored them
    for execution_id in ("old-ended", "old-active", "gone"):
        mongo.checkpoints.insert_one(
            {"_id": f"{execution_id}/0", "run": execution_id, "phase": 0, "blob": b"x"}
        )
    assert mongo.purge("2030-01-01T00:00:00.000Z", 10) == 0  # undated: out of the purge's sight
    # ten years: none of these expires by itself (TTL) while the test looks at them
    mongo.keep_for(3650)
    assert hidden_date(mongo, "old-ended") == ENDED
    assert hidden_date(mongo, "old-no-end") == datetime(2023, 12, 1, 10, 0)
    assert hidden_date(mongo, "old-active") is None
    dates = {row["run"]: row.get("ended") for row in mongo.checkpoints.find({})}
    assert dates["old-ended"] == ENDED and dates["old-active"] is None
    assert isinstance(dates["gone"], datetime)  # its run is gone: it expires from now
    assert mongo.purge("2030-01-01T00:00:00.000Z", 10) == 2
    assert mongo.get("old-active") is not None
    assert {row["run"] for row in mongo.checkpoints.find({})} == {"old-active", "gone"}
