"""The write path the live views and reruns build on, held alike on every backend: each change
to a document numbered (its sequence number) and recorded in the run's change journal in the
same write; a write conditional on the number read; one checkpoint per finished phase, kept with
the change that ends the phase, and none kept by a change refused."""

from __future__ import annotations

import copy

import pytest

from procexec.engine.store.base import ExecutionStore, Update
from tests.engine.store.documents import execution

START = "2021-07-01T10:00:00.000Z"


@pytest.fixture
def run(store: ExecutionStore) -> str:
    store.insert(copy.deepcopy(execution("r1", "DEMO", "triggered", START)), meta={})
    return "r1"


def test_a_new_document_is_at_zero_and_each_change_adds_one(
    store: ExecutionStore, run: str
) -> None:
    doc, seq = store.get_at(run) or ({}, -1)
    assert (doc["status"], seq) == ("triggered", 0)
    assert store.changes(run) == []
    claim = Update(set={"status": "running", "message": "Running"}, meta={"worker": "w1"})
    assert store.update(run, claim)
    phase = {"name": "EXTRACT", "status": "running", "log": []}
    assert store.update(run, Update(push={"phases": [phase]}))
    assert store.update(run, Update(push={"phases.0.log": ["a line", "another"]}))
    assert store.update(run, Update(meta={"heartbeat": "2021-07-01T10:00:01.000Z"}))  # no change
    doc, seq = store.get_at(run) or ({}, -1)
    assert seq == 3 and doc["phases"][0]["log"] == ["a line", "another"]
    journal = store.changes(run)
    assert [number for number, _ in journal] == [1, 2, 3]
    assert journal[0][1] == {"set": {"status": "running", "message": "Running"}}
    assert journal[1][1] == {"push": {"phases": [phase]}}
    assert journal[2][1] == {"push": {"phases.0.log": ["a line", "another"]}}
    assert store.changes(run, after=2) == journal[2:]
    assert store.changes(run, after=3) == []
    assert store.changes("unknown") == [] and store.get_at("unknown") is None


def test_a_change_may_record_its_own_journal_entry(store: ExecutionStore, run: str) -> None:
    note = {"set": {"status": "running"}, "lines": {"0": ["new"]}}
    assert store.update(run, Update(set={"status": "running", "x": [1, 2]}, note=note))
    assert store.changes(run) == [(1, note)]


def test_a_write_conditional_on_the_number_read_applies_once(
    store: ExecutionStore, run: str
) -> None:
    _, seq = store.get_at(run) or ({}, -1)
    first = Update(set={"status": "running"}, meta={"worker": "w1"}, expect_seq=seq)
    second = Update(set={"status": "running"}, meta={"worker": "w2"}, expect_seq=seq)
    assert store.update(run, first)
    assert not store.update(run, second)  # read before the first: refused
    assert store.get_meta(run)["worker"] == "w1"
    assert [number for number, _ in store.changes(run)] == [1]


def test_each_finished_phase_keeps_its_checkpoint(store: ExecutionStore, run: str) -> None:
    for index in range(3):
        ended = Update(
            set={"status": "running", f"phases.{index}": {"name": f"P{index}"}},
            checkpoints=[(index, f"after {index}".encode())],
        )
        assert store.update(run, ended)
    assert store.load_checkpoint(run) == (2, b"after 2")
    assert store.load_checkpoint(run, 0) == (0, b"after 0")
    assert store.load_checkpoint(run, 1) == (1, b"after 1")
    assert store.load_checkpoint(run, 5) is None
    store.save_checkpoint(run, 1, b"again")  # a phase run again replaces its own alone
    assert store.load_checkpoint(run, 1) == (1, b"again")
    assert store.load_checkpoint(run) == (2, b"after 2")


def test_a_refused_change_keeps_no_checkpoint_and_no_entry(store: ExecutionStore, run: str) -> None:
    refused = Update(
        set={"status": "success"},
        expect_worker="not the holder",
        checkpoints=[(0, b"never")],
    )
    assert not store.update(run, refused)
    assert store.load_checkpoint(run) is None
    assert store.changes(run) == []
    assert store.get_at(run) is not None and (store.get_at(run) or ({}, -1))[1] == 0


def test_purging_a_run_takes_its_checkpoints_and_journal(store: ExecutionStore) -> None:
    doc = execution("old", "DEMO", "running", START)
    store.insert(copy.deepcopy(doc), meta={})
    assert store.update("old", Update(set={"message": "x"}, checkpoints=[(0, b"kept")]))
    end = {"status": "success", "end": "2021-07-01T10:05:00.000Z"}
    assert store.update("old", Update(set=end))
    assert store.purge("2030-01-01T00:00:00.000Z", 10) == 1
    assert store.load_checkpoint("old") is None
    assert store.changes("old") == []


def test_the_journal_of_every_run_numbers_entries_across_runs(store: ExecutionStore) -> None:
    """Every run's entries in one order of places (`journal_since`), on every store."""
    for name in ("a", "b"):
        doc = execution(name, "DEMO", "triggered", START)
        store.insert(copy.deepcopy(doc), meta={})
    assert store.journal_head() == 0
    assert store.update("a", Update(set={"status": "running", "message": "Running"}))
    assert store.update("b", Update(set={"status": "running"}))
    assert store.update("a", Update(set={"status": "success"}))
    rows = store.journal_since(0)
    assert [(r.pos, r.execution_id, r.seq) for r in rows] == [(1, "a", 1), (2, "b", 1), (3, "a", 2)]
    assert rows[0].entry == {"set": {"status": "running", "message": "Running"}}
    assert rows[0].doc["status"] == "success"  # the run as it is now
    assert [r.pos for r in store.journal_since(1, limit=1)] == [2]
    assert store.journal_head() == 3
