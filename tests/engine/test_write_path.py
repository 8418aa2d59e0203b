"""The store's work a run: at most one write per phase boundary (the claim begins the first
phase; a phase's end, its checkpoint and the next phase's start are one write, staged and
written with the next flush or the run's end; the last phase's end and the run's end are one),
each numbered in the run's change journal, with the lines new to each log recorded once."""

from __future__ import annotations

import sqlite3
from typing import Any

from procexec import PhaseContext, Process
from procexec.engine.process import ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService
from tests.engine.runs import Bench, texts

PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]


def traced(conn: sqlite3.Connection) -> list[str]:
    """The statements run on `conn` from now on (and the triggers they fire)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return statements


def quiet(name: str, lines: int = 0) -> Process:
    process = Process(name)
    for phase in PHASES:

        @process.phase(phase)
        def run(ctx: PhaseContext, previous: Any, phase: str = phase) -> int:
            for number in range(lines):
                ctx.log(f"{phase} line {number}")
            return (previous or 0) + 1

    return process


def test_a_four_phase_run_of_short_phases_is_two_store_transactions(bench: Bench) -> None:
    bench.add(quiet("QUIET"))
    execution_id = bench.record("QUIET")
    # no flush falls within the run: its boundaries are written with its end
    runner = bench.runner("w1", flush_interval=60, heartbeat_interval=60)
    statements = traced(bench.store._connect())
    assert runner.run(execution_id) == "success"
    assert len([s for s in statements if s.startswith("BEGIN")]) == 2  # the claim, the end
    found = bench.store.get_at(execution_id)
    assert found is not None and found[1] == 2
    # every finished phase kept its own checkpoint, all in the end's write
    for index in range(len(PHASES)):
        kept = bench.store.load_checkpoint(execution_id, index)
        assert kept is not None and kept[0] == index
    claim, end = (change for _, change in bench.store.changes(execution_id))
    assert claim["set"]["status"] == "running"
    assert [phase["name"] for phase in claim["push"]["phases"]] == ["EXTRACT"]
    assert end["set"]["status"] == "success"
    assert end["set"]["phases.0.status"] == "success"
    assert [end["set"][f"phases.{i}"]["name"] for i in range(1, 4)] == PHASES[1:]
    assert end["lines"]["0"][0].endswith("info Completed EXTRACT")
    assert [p["status"] for p in found[0]["phases"]] == ["success"] * len(PHASES)


def test_a_phase_end_and_its_checkpoint_are_one_write(bench: Bench) -> None:
    """Phases longer than the flush interval: the recording thread writes each boundary as
    it comes (the phase's end, its checkpoint and the next phase's start), never a checkpoint
    without its phase marked finished."""
    process = Process("SLOW")
    for phase in PHASES:

        @process.phase(phase)
        def run(ctx: PhaseContext, previous: Any) -> int:
            ctx.sleep(0.1)
            return (previous or 0) + 1

    bench.add(process)
    execution_id = bench.record("SLOW")
    written: list[Any] = []
    apply = bench.store.update

    def update(execution_id: str, change: Any) -> bool:
        written.append(change)
        return apply(execution_id, change)

    bench.store.update = update  # type: ignore[method-assign]
    assert bench.runner("w1", flush_interval=0.02).run(execution_id) == "success"
    kept = [change for change in written if change.checkpoints]
    assert kept, "no checkpoint written"
    for change in kept:
        for index, _ in change.checkpoints:
            assert change.set[f"phases.{index}.status"] == "success"
    assert len(kept) >= 2  # the boundaries were written as they came, not all at the end
    for index in range(len(PHASES)):
        assert bench.store.load_checkpoint(execution_id, index) is not None


def test_the_journal_records_each_line_once_even_past_the_log_cap(bench: Bench) -> None:
    bench.add(quiet("CHATTY", lines=30))
    execution_id = bench.record("CHATTY")
    runner = bench.runner("w1", max_log_lines=10)
    assert runner.run(execution_id) == "success"
    doc = bench.doc(execution_id)
    assert len(doc["phases"][0]["log"]) == 10  # capped: head, marker, tail
    sent: dict[str, list[str]] = {}
    for _, change in bench.store.changes(execution_id):
        for index, lines in change.get("lines", {}).items():
            sent.setdefault(index, []).extend(lines)
        assert not any(path.endswith(".log") for path in change.get("set", {}))
    assert [line.split(" ", 2)[2] for line in sent["0"]] == [
        *(f"EXTRACT line {number}" for number in range(30)),
        "Completed EXTRACT",
    ]


def test_no_heartbeat_is_sent_once_the_run_has_ended(bench: Bench) -> None:
    from procexec.engine.recorder import ExecutionRecorder

    execution_id = bench.record("DEMO")
    token = bench.runner("w1").claim(execution_id)
    recorder = ExecutionRecorder(bench.store, execution_id, flush_interval=60, token=token)
    assert recorder.heartbeat()
    assert recorder.set(status="success", message="Completed Successfully")
    before = bench.store.get_meta(execution_id)["heartbeat"]
    assert recorder.heartbeat()  # not refused, not sent: the run is not taken away
    assert not recorder.control.aborted
    assert bench.store.get_meta(execution_id)["heartbeat"] == before


def test_the_write_path_holds_on_every_backend(store: ExecutionStore) -> None:
    """A run of slow and quick phases, with log lines, on SQLite and on MongoDB: its
    boundaries written as they come or together, never a path beside its parent in one write
    (MongoDB refuses that), every phase's checkpoint kept, the journal numbered without gaps."""
    process = Process("MIXED")
    for number, phase in enumerate(PHASES):

        @process.phase(phase)
        def run(ctx: PhaseContext, previous: Any, slow: bool = number % 2 == 0) -> int:
            ctx.log("begun")
            if slow:
                ctx.sleep(0.08)
            ctx.log("done")
            return (previous or 0) + 1

    registry = ProcessRegistry([process])
    doc = TriggerService(store, registry, lambda *args: None).record(
        "MIXED", run_as="alice", environment="production"
    )
    runner = PhaseRunner(store, registry, worker_id="w1", flush_interval=0.02)
    assert runner.run(doc["_id"]) == "success"
    found = store.get_at(doc["_id"])
    assert found is not None
    final, seq = found
    assert [(p["name"], p["status"]) for p in final["phases"]] == [(p, "success") for p in PHASES]
    for phase in final["phases"]:
        assert texts(phase["log"])[:2] == ["info begun", "info done"], phase
    journal = store.changes(doc["_id"])
    assert [number for number, _ in journal] == list(range(1, seq + 1))
    for index in range(len(PHASES)):
        kept = store.load_checkpoint(doc["_id"], index)
        assert kept is not None and kept[0] == index
