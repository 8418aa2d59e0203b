"""Fencing: a run is claimed by one worker at a time; a finished run is never run again, and
a worker whose claim was taken away writes nothing more (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.control import RunAborted
from procexec.engine.domain import PhaseStatus
from procexec.engine.process import Process
from procexec.engine.recorder import ExecutionRecorder
from tests.engine.runs import (
    DEADLINE,
    FLUSH,
    NO_HEARTBEAT,
    Background,
    Bench,
    past_lost_timeout,
    steps,
    texts,
)


def test_claiming_is_conditional_a_second_claim_gets_nothing(bench: Bench) -> None:
    execution_id = bench.record("DEMO")
    first, second = bench.runner("w1"), bench.runner("w2")

    token = first.claim(execution_id)
    assert token is not None and token.startswith("w1#")
    assert second.claim(execution_id) is None
    assert second.run(execution_id) is None  # a duplicated task message: runs nothing
    assert bench.store.get_meta(execution_id)["worker"] == token
    assert bench.doc(execution_id)["phases"] == []


def test_a_finished_execution_is_never_run_again(bench: Bench) -> None:
    process, calls = steps("ONCE", "A", "B")
    bench.add(process)
    execution_id = bench.record("ONCE")
    assert bench.runner("w1").run(execution_id) == "success"
    finished = bench.doc(execution_id)

    assert bench.runner("w2").run(execution_id) is None
    assert bench.runner("w1").run(execution_id) is None
    assert calls == {"A": 1, "B": 1}
    assert bench.doc(execution_id) == finished


def test_a_stale_claims_writes_are_refused_and_its_control_aborts(bench: Bench) -> None:
    execution_id = bench.record("DEMO")
    stale = bench.runner("w1").claim(execution_id)
    assert stale is not None
    recorder = ExecutionRecorder(bench.store, execution_id, flush_interval=FLUSH, token=stale)
    recorder.start_phase("EXTRACT", "Running EXTRACT")
    recorder.log(0, "2021-07-01T16:30:13.390935800Z[UTC] info written by the first worker")
    assert recorder.flush()

    # The run is taken away (the housekeeper thought w1 dead) and claimed by another worker.
    bench.housekeeper.run_once(past_lost_timeout())
    fresh = bench.runner("w2").claim(execution_id)
    assert fresh is not None and fresh != stale
    held = bench.doc(execution_id)
    assert held["status"] == "running"

    recorder.log(0, "2021-07-01T16:30:14.000000000Z[UTC] info written after the claim was lost")
    assert recorder.flush() is False
    assert recorder.control.aborted
    with pytest.raises(RunAborted):
        recorder.control.check()
    # Nothing more gets through with the stale token: no status, no phase, no heartbeat.
    assert recorder.set(status="success", message="Completed Successfully") is False
    recorder.end_phase(0, PhaseStatus.SUCCESS, "Completed EXTRACT", b"checkpoint")
    assert recorder.flush() is False  # the phase's end and its checkpoint: refused together
    assert bench.store.load_checkpoint(execution_id) is None
    assert recorder.heartbeat() is False
    assert bench.doc(execution_id) == held
    assert bench.store.get_meta(execution_id)["worker"] == fresh


def test_a_runner_that_lost_its_claim_stops_and_writes_nothing_more(bench: Bench) -> None:
    entered, resume = threading.Event(), threading.Event()
    process = Process("FENCED")
    seen: list[str] = []

    @process.phase("FIRST")
    def first(ctx: PhaseContext, previous: Any) -> int:
        return 1

    @process.phase("SECOND")
    def second(ctx: PhaseContext, previous: Any) -> int:
        seen.append("SECOND")
        if len(seen) == 1:
            entered.set()
            assert resume.wait(DEADLINE)  # the first worker stalls here (a long GC, a freeze)
            ctx.log("written after the claim was lost")
            ctx.sleep(DEADLINE)  # stops at once: the refused flush aborted the run
            seen.append("the stale run went on")
        return 2

    @process.phase("THIRD")
    def third(ctx: PhaseContext, previous: Any) -> int:
        seen.append("THIRD")
        return 3

    bench.add(process)
    execution_id = bench.record("FENCED")
    stale_run = Background(
        bench.store,
        lambda: bench.runner("w1", heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "stale-runner",
    )
    assert entered.wait(DEADLINE)
    report = bench.housekeeper.run_once(past_lost_timeout())
    assert report.resumed == [execution_id]
    assert bench.runner("w2").run(execution_id) == "success"
    finished = bench.doc(execution_id)

    resume.set()
    assert stale_run.join() == "success"  # what the store says; the stale run added nothing
    assert seen == ["SECOND", "SECOND", "THIRD"]
    assert bench.doc(execution_id) == finished
    second_log = texts(bench.phase(execution_id, "SECOND")["log"])
    assert "info written after the claim was lost" not in second_log
    assert [phase["name"] for phase in finished["phases"]] == ["FIRST", "SECOND", "THIRD"]
