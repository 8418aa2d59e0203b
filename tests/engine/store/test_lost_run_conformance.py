"""The store calls behind lost-run detection and recovery, held alike on every backend (SQLite;
MongoDB, on mongomock through its adapter or on a real server): `stale` by heartbeat and by
dispatch time, updates fenced by status and worker claim, `fail_running_phases`, and the
checkpoints a resumed run starts from."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procexec.engine.store.base import META_KEYS, ExecutionStore, Update
from tests.engine.store.documents import execution

ACTIVE = ("running", "waiting", "retrying")
BEFORE = "2021-07-01T12:00:00.000Z"
OLD, OLDER, RECENT = "2021-07-01T11:59:00.000Z", "2021-07-01T11:00:00.000Z", BEFORE


def add(
    store: ExecutionStore, execution_id: str, status: str, phases: Any = (), **meta: Any
) -> dict[str, Any]:
    doc = execution(execution_id, "DEMO", status, "2021-07-01T10:00:00.000Z", phases=phases)
    store.insert(copy.deepcopy(doc), meta=meta)
    return doc


@pytest.fixture
def runs(store: ExecutionStore) -> ExecutionStore:
    add(store, "old", "running", worker="w1", heartbeat=OLD)
    add(store, "older", "waiting", worker="w2", heartbeat=OLDER)
    add(store, "silent", "retrying", worker="w3")  # claimed, no heartbeat yet
    add(store, "alive", "running", worker="w4", heartbeat=RECENT)  # not before: not stale
    add(store, "done", "success", worker="w5", heartbeat=OLDER)  # finished: never stale
    add(store, "queued", "triggered", dispatched=OLD)
    add(store, "fresh", "triggered", dispatched=RECENT)
    add(store, "unsent", "triggered")
    return store


# --- stale --------------------------------------------------------------------------------


def test_stale_runs_have_an_old_or_no_heartbeat_oldest_first(runs: ExecutionStore) -> None:
    found = runs.stale(ACTIVE, "heartbeat", BEFORE)
    assert [execution_id for execution_id, _ in found] == ["silent", "older", "old"]
    meta = dict(found)
    assert set(meta["older"]) == set(META_KEYS)
    assert (meta["older"]["worker"], meta["older"]["heartbeat"]) == ("w2", OLDER)
    assert (meta["silent"]["worker"], meta["silent"]["heartbeat"]) == ("w3", None)


def test_stale_takes_at_most_its_limit(runs: ExecutionStore) -> None:
    assert [execution_id for execution_id, _ in runs.stale(ACTIVE, "heartbeat", BEFORE, 2)] == [
        "silent",
        "older",
    ]
    assert runs.stale(["running"], "heartbeat", BEFORE) == [
        ("old", runs.get_meta("old")),
    ]


def test_stale_triggers_were_dispatched_long_ago_or_never(runs: ExecutionStore) -> None:
    found = runs.stale(["triggered"], "dispatched", BEFORE)
    assert [execution_id for execution_id, _ in found] == ["unsent", "queued"]
    assert dict(found)["queued"]["dispatched"] == OLD


def test_stale_refuses_a_key_that_is_no_meta_key(runs: ExecutionStore) -> None:
    with pytest.raises(KeyError):
        runs.stale(ACTIVE, "status", BEFORE)


def test_a_heartbeat_moves_a_run_out_of_the_stale_ones(runs: ExecutionStore) -> None:
    beat = Update(meta={"heartbeat": RECENT}, expect_status=frozenset(ACTIVE), expect_worker="w1")
    assert runs.update("old", beat)
    assert runs.get_meta("old")["heartbeat"] == RECENT
    assert "old" not in dict(runs.stale(ACTIVE, "heartbeat", BEFORE))


# --- fenced updates -----------------------------------------------------------------------


def test_an_update_for_another_worker_changes_nothing(runs: ExecutionStore) -> None:
    before, meta = runs.get("old"), runs.get_meta("old")
    for change in (
        Update(meta={"heartbeat": RECENT}, expect_worker="w2"),
        Update(set={"message": "stolen"}, push={"phases": [{"name": "X"}]}, expect_worker="w2"),
        Update(set={"status": "failed"}, expect_status=frozenset(ACTIVE), expect_worker="w9"),
        Update(
            set={"status": "failed"}, expect_status=frozenset({"triggered"}), expect_worker="w1"
        ),
    ):
        assert runs.update("old", change) is False
    assert runs.get("old") == before
    assert runs.get_meta("old") == meta


def test_a_resumed_run_fences_out_its_lost_worker(runs: ExecutionStore) -> None:
    """The housekeeping's resume: the claim cleared, so the lost worker's writes are refused,
    and the next worker's claim is the one that counts."""
    resume = Update(
        set={"status": "triggered", "message": "Worker lost; resuming"},
        meta={"worker": None, "heartbeat": None, "recoveries": 1, "dispatched": RECENT},
        expect_status=frozenset(ACTIVE),
        expect_worker="w1",
    )
    assert runs.update("old", resume)
    assert runs.update("old", resume) is False  # a second housekeeper: already done
    meta = runs.get_meta("old")
    assert (meta["worker"], meta["heartbeat"], meta["recoveries"]) == (None, None, 1)
    assert meta["dispatched"] == RECENT
    late = Update(set={"message": "still here"}, expect_worker="w1")
    assert runs.update("old", late) is False
    claim = Update(
        set={"status": "running"}, meta={"worker": "w6"}, expect_status=frozenset({"triggered"})
    )
    assert runs.update("old", claim)
    assert runs.update("old", Update(set={"message": "resumed"}, expect_worker="w6"))
    doc = runs.get("old")
    assert doc is not None and (doc["status"], doc["message"]) == ("running", "resumed")


# --- fail_running_phases ------------------------------------------------------------------


def test_fail_running_phases_fails_those_still_running_and_no_other(store: ExecutionStore) -> None:
    doc = add(
        store,
        "r1",
        "running",
        phases=(("EXTRACT", "success"), ("TRANSFORM", "running")),
        worker="w1",
    )
    end = "2021-07-01T12:30:00.000Z"
    lost = "Worker lost: no heartbeat from w1 for 60 s"
    failed = Update(
        set={"status": "failed", "message": lost, "end": end},
        fail_running_phases=lost,
        expect_status=frozenset(ACTIVE),
        expect_worker="w1",
    )
    assert store.update("r1", failed)
    expected = copy.deepcopy(doc)
    expected.update(status="failed", message=lost, end=end)
    expected["phases"][1].update(status="failed", message=lost, end=end)
    assert store.get("r1") == expected
    assert store.update("r1", failed) is False  # failed now: not active


def test_fail_running_phases_without_an_end_leaves_the_phases_end_as_it_was(
    store: ExecutionStore,
) -> None:
    """The resume: running phases fail, the run itself is not over."""
    doc = add(store, "r2", "running", phases=(("EXTRACT", "running"),), worker="w1")
    assert "end" not in doc["phases"][0]
    resume = Update(
        set={"status": "triggered", "message": "resuming"},
        fail_running_phases="Worker lost",
        expect_worker="w1",
    )
    assert store.update("r2", resume)
    stored = store.get("r2")
    assert stored is not None
    assert stored["phases"] == [{**doc["phases"][0], "status": "failed", "message": "Worker lost"}]


# --- checkpoints --------------------------------------------------------------------------


def test_checkpoints_save_load_and_overwrite(store: ExecutionStore) -> None:
    assert store.load_checkpoint("c1") is None
    store.save_checkpoint("c1", 0, b"extracted")
    assert store.load_checkpoint("c1") == (0, b"extracted")
    blob = bytes(range(256)) * 4096  # every byte value, 1 MB
    store.save_checkpoint("c1", 2, blob)
    assert store.load_checkpoint("c1") == (2, blob)
    store.save_checkpoint("c2", 1, b"")
    assert store.load_checkpoint("c2") == (1, b"")
    assert store.load_checkpoint("c1") == (2, blob)  # each run has its own
    found = store.load_checkpoint("c1")
    assert found is not None and isinstance(found[1], bytes)
