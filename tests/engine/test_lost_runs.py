"""Housekeeping of lost runs: a run whose worker sends no heartbeat past the lost-run timeout
is resumed from its first unfinished phase, or failed when its process says so or when it
was lost too often; live heartbeats keep a long phase from being taken for lost
(the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from procexec.engine.context import PhaseContext
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import Process
from procexec.engine.recorder import ExecutionRecorder
from tests.engine.runs import (
    DEADLINE,
    FLUSH,
    LOST_TIMEOUT,
    NO_HEARTBEAT,
    Background,
    Bench,
    later,
    past_lost_timeout,
    steps,
    texts,
    wait_for,
)


def test_a_lost_run_is_resumed_from_its_first_unfinished_phase(bench: Bench) -> None:
    entered, release = threading.Event(), threading.Event()
    process = Process("RESUMABLE")
    calls: list[tuple[str, str, Any]] = []

    def record(phase: str, ctx: PhaseContext, previous: Any) -> None:
        token = bench.store.get_meta(ctx.execution_id)["worker"]
        calls.append((phase, str(token).split("#")[0], previous))

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> dict[str, int]:
        record("EXTRACT", ctx, previous)
        ctx.log("extracted 3 rows")
        return {"rows": 3}

    @process.phase("TRANSFORM")
    def transform(ctx: PhaseContext, previous: Any) -> dict[str, int]:
        record("TRANSFORM", ctx, previous)
        if len(calls) == 2:  # the first worker hangs here and sends no heartbeat: "dead"
            ctx.log("first worker, about to die")
            entered.set()
            release.wait(DEADLINE)
        return {"rows": previous["rows"] * 2}

    @process.phase("LOAD")
    def load(ctx: PhaseContext, previous: Any) -> dict[str, int]:
        record("LOAD", ctx, previous)
        return previous

    bench.add(process)
    execution_id = bench.record("RESUMABLE")
    dead = Background(
        bench.store,
        lambda: bench.runner("w1", heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "dead-worker",
    )
    try:
        assert entered.wait(DEADLINE)
        wait_for(
            lambda: any(
                phase["name"] == "TRANSFORM"
                and "info first worker, about to die" in texts(phase["log"])
                for phase in bench.doc(execution_id)["phases"]
            ),
            "the dying worker's line",
        )
        lost_token = bench.store.get_meta(execution_id)["worker"]
        assert str(lost_token).startswith("w1#")

        # Within the timeout the run is left alone.
        report = bench.housekeeper.run_once(later(LOST_TIMEOUT - 1))
        assert (report.resumed, report.failed) == ([], [])
        assert bench.status(execution_id) == "running"
        assert bench.broker.calls == []

        # Past it, the run is lost: its phase fails, the run is triggered and sent again.
        report = bench.housekeeper.run_once(past_lost_timeout())
        assert report.resumed == [execution_id] and report.failed == []
        assert bench.broker.calls == [(execution_id, 0.0)]
        reaped = bench.doc(execution_id)
        lost = f"Worker lost: no heartbeat from {lost_token} for 5 s"
        assert reaped["status"] == "triggered"
        assert reaped["message"] == f"{lost}; resuming (recovery 1 of 3)"
        assert [(p["name"], p["status"]) for p in reaped["phases"]] == [
            ("EXTRACT", "success"),
            ("TRANSFORM", "failed"),
        ]
        assert reaped["phases"][1]["message"] == lost
        meta = bench.store.get_meta(execution_id)
        assert meta["worker"] is None and meta["recoveries"] == 1

        # The redelivered task resumes on another worker from TRANSFORM, with EXTRACT's result.
        assert bench.runner("w2").run(execution_id) == "success"
    finally:
        release.set()
    finished = bench.doc(execution_id)
    assert dead.join() == "success"  # the store's word; the dead worker wrote nothing

    assert calls == [
        ("EXTRACT", "w1", None),
        ("TRANSFORM", "w1", {"rows": 3}),
        ("TRANSFORM", "w2", {"rows": 3}),  # from the checkpoint: EXTRACT is not run again
        ("LOAD", "w2", {"rows": 6}),
    ]
    assert finished["status"] == "success"
    assert [(p["name"], p["status"]) for p in finished["phases"]] == [
        ("EXTRACT", "success"),
        ("TRANSFORM", "success"),
        ("LOAD", "success"),
    ]
    assert texts(finished["phases"][0]["log"]) == [
        "info extracted 3 rows",
        "info Completed EXTRACT",
    ]
    transform_log = texts(finished["phases"][1]["log"])
    assert transform_log[0] == "info first worker, about to die"  # the lost attempt's log kept
    assert "info Resuming TRANSFORM on w2" in transform_log
    assert bench.doc(execution_id) == finished


def test_live_heartbeats_keep_a_long_phase_from_being_taken_for_lost(bench: Bench) -> None:
    """A phase that blocks without calling ctx still has its worker's heartbeat behind it."""
    process = Process("LONG")
    entered, release = threading.Event(), threading.Event()

    @process.phase("BLOCK")
    def block(ctx: PhaseContext, previous: Any) -> None:
        entered.set()
        release.wait(DEADLINE)

    bench.add(process)
    execution_id = bench.record("LONG")
    keeper = Housekeeper(
        bench.store, bench.registry, bench.triggers, lost_timeout=1.0, redispatch_after=60
    )
    run = Background(
        bench.store, lambda: bench.runner(heartbeat_interval=0.05).run(execution_id), "runner"
    )
    try:
        assert entered.wait(DEADLINE)
        first = bench.store.get_meta(execution_id)["heartbeat"]
        wait_for(
            lambda: bench.store.get_meta(execution_id)["heartbeat"] != first,
            "a heartbeat while the phase blocks",
        )
        end = time.monotonic() + 2.0  # twice the lost-run timeout, on the real clock
        while time.monotonic() < end:
            report = keeper.run_once()
            assert (report.resumed, report.failed) == ([], []), bench.doc(execution_id)
            time.sleep(0.05)
    finally:
        release.set()
    assert run.join() == "success"
    assert bench.store.get_meta(execution_id)["recoveries"] is None


def start_dead_run(bench: Bench, execution_id: str, worker: str) -> str:
    """Claim the run and start its first phase as a worker that then dies; returns its token."""
    token = bench.runner(worker).claim(execution_id)
    assert token is not None
    recorder = ExecutionRecorder(bench.store, execution_id, flush_interval=FLUSH, token=token)
    recorder.start_phase("EXTRACT", "Running EXTRACT")
    assert recorder.flush()  # as its recording thread would have, before the worker died
    return token


def test_a_lost_run_fails_when_its_process_says_so(bench: Bench) -> None:
    process, calls = steps("FRAGILE", "EXTRACT", "LOAD", on_lost="fail")
    bench.add(process)
    execution_id = bench.record("FRAGILE")
    token = start_dead_run(bench, execution_id, "w1")

    report = bench.housekeeper.run_once(past_lost_timeout())

    assert report.failed == [execution_id] and report.resumed == []
    doc = bench.doc(execution_id)
    lost = f"Worker lost: no heartbeat from {token} for 5 s"
    assert (doc["status"], doc["message"]) == ("failed", lost)
    assert "end" in doc
    assert [(p["name"], p["status"], p["message"]) for p in doc["phases"]] == [
        ("EXTRACT", "failed", lost)
    ]
    assert bench.broker.calls == []  # not sent again
    assert bench.runner("w2").run(execution_id) is None  # nor runnable again
    assert bench.housekeeper.run_once(later(LOST_TIMEOUT * 10)).failed == []
    assert bench.doc(execution_id) == doc
    assert calls == {}


def test_a_run_lost_more_often_than_max_recoveries_fails(bench: Bench) -> None:
    process, _ = steps("UNLUCKY", "EXTRACT", "LOAD", max_recoveries=1)
    bench.add(process)
    execution_id = bench.record("UNLUCKY")
    start_dead_run(bench, execution_id, "w1")

    first = bench.housekeeper.run_once(past_lost_timeout())
    assert first.resumed == [execution_id]
    assert bench.status(execution_id) == "triggered"
    assert bench.broker.ids == [execution_id]

    second_token = start_dead_run(bench, execution_id, "w2")
    second = bench.housekeeper.run_once(past_lost_timeout())

    assert second.failed == [execution_id] and second.resumed == []
    doc = bench.doc(execution_id)
    assert doc["status"] == "failed"
    assert doc["message"] == (
        f"Worker lost: no heartbeat from {second_token} for 5 s; gave up after 1 recoveries"
    )
    assert doc["phases"][0]["status"] == "failed"
    assert bench.broker.ids == [execution_id]  # sent once, for the one recovery


def test_a_lost_run_waiting_to_retry_is_recovered_too(bench: Bench) -> None:
    process, _ = steps("WAITER", "EXTRACT")
    bench.add(process)
    execution_id = bench.record("WAITER")
    token = start_dead_run(bench, execution_id, "w1")
    recorder = ExecutionRecorder(bench.store, execution_id, flush_interval=FLUSH, token=token)
    assert recorder.set(status="waiting", message="Waiting to retry EXTRACT (attempt 2 of 2)")

    assert bench.housekeeper.run_once(past_lost_timeout()).resumed == [execution_id]
    assert bench.runner("w2").run(execution_id) == "success"
