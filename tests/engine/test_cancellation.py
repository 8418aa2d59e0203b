"""Cancellation of a triggered, running, sleeping, waiting, finished or unknown execution, and
the run control that stops a runner (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.control import RunAborted, RunControl
from procexec.engine.errors import Conflict, NotFound
from procexec.engine.process import Process
from tests.engine.runs import (
    DEADLINE,
    NO_HEARTBEAT,
    Background,
    Bench,
    cancel_execution,
    flaky,
    steps,
    texts,
    wait_for,
)


def test_cancelling_a_triggered_execution(bench: Bench) -> None:
    execution_id = bench.record("DEMO")
    revoked: list[str] = []

    doc = cancel_execution(bench.store, execution_id, user="carol", revoke=revoked.append)

    assert (doc["status"], doc["message"]) == ("failed", "Cancelled by carol")
    assert "end" in doc
    assert revoked == [execution_id]
    assert bench.doc(execution_id) == doc
    # Its task message, if a worker still gets it, runs nothing.
    assert bench.runner().run(execution_id) is None
    assert bench.doc(execution_id) == doc
    with pytest.raises(Conflict, match="already finished"):
        cancel_execution(bench.store, execution_id, user="carol")


def chatty(name: str, **phase_options: Any) -> tuple[Process, threading.Event, list[str]]:
    """ONE, then LOOP (logs and sleeps until stopped), then THREE."""
    running = threading.Event()
    stopped: list[str] = []
    # A retry would wait 60 s: a cancellation must never be taken for a failure to retry.
    process = Process(name, retries=1, retry_delay=60)

    @process.phase("ONE")
    def one(ctx: PhaseContext, previous: Any) -> int:
        return 1

    @process.phase("LOOP", **phase_options)
    def loop(ctx: PhaseContext, previous: Any) -> int:
        try:
            for tick in range(100_000):
                ctx.log(f"tick {tick}")
                if tick == 3:
                    running.set()
                ctx.sleep(0.01)
        except RunAborted as aborted:
            stopped.append(aborted.reason)
            raise
        return 2

    @process.phase("THREE")
    def three(ctx: PhaseContext, previous: Any) -> int:
        pytest.fail("a phase after a cancellation ran")

    return process, running, stopped


def test_cancelling_a_running_execution_stops_its_runner_at_the_next_log(bench: Bench) -> None:
    process, running, stopped = chatty("CHATTY")
    bench.add(process)
    execution_id = bench.record("CHATTY")
    # Heartbeats are rare here: the refused log flush alone stops the runner.
    run = Background(
        bench.store,
        lambda: bench.runner(heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "runner",
    )
    assert running.wait(DEADLINE)
    revoked: list[str] = []

    doc = cancel_execution(bench.store, execution_id, user="carol", revoke=revoked.append)

    assert (doc["status"], doc["message"]) == ("failed", "Cancelled by carol")
    loop = doc["phases"][1]
    assert (loop["name"], loop["status"], loop["message"]) == (
        "LOOP",
        "failed",
        "Cancelled by carol",
    )
    assert doc["phases"][0]["status"] == "success"
    assert revoked == [execution_id]
    assert run.join() == "failed"
    assert stopped == ["Cancelled by carol"]
    # The runner wrote nothing after the cancellation: not its buffered lines, not THREE.
    assert bench.doc(execution_id) == doc
    with pytest.raises(Conflict):
        cancel_execution(bench.store, execution_id, user="dave")
    assert bench.doc(execution_id) == doc


def test_cancelling_stops_a_phase_sleeping_without_logging(bench: Bench) -> None:
    process = Process("DOZY")
    asleep = threading.Event()
    stopped: list[str] = []

    @process.phase("NAP")
    def nap(ctx: PhaseContext, previous: Any) -> None:
        asleep.set()
        try:
            ctx.sleep(600)
        except RunAborted as aborted:
            stopped.append(aborted.reason)
            raise

    bench.add(process)
    execution_id = bench.record("DOZY")
    run = Background(
        bench.store, lambda: bench.runner(heartbeat_interval=0.05).run(execution_id), "runner"
    )
    assert asleep.wait(DEADLINE)
    doc = cancel_execution(bench.store, execution_id, user="carol")
    assert run.join() == "failed"  # woken by the refused heartbeat, not after 600 s
    assert stopped == ["Cancelled by carol"]
    assert bench.doc(execution_id) == doc


def test_cancelling_an_execution_waiting_to_retry(bench: Bench) -> None:
    process = Process("PATIENT", retries=3, retry_delay=600)
    flaky(process, "FETCH", failures=99)
    bench.add(process)
    execution_id = bench.record("PATIENT")
    run = Background(
        bench.store, lambda: bench.runner(heartbeat_interval=0.05).run(execution_id), "runner"
    )
    wait_for(lambda: bench.status(execution_id) == "waiting", "the run to wait for its retry")

    doc = cancel_execution(bench.store, execution_id, user="carol")

    assert (doc["status"], doc["message"]) == ("failed", "Cancelled by carol")
    assert run.join() == "failed"  # not after the 600 s retry delay
    assert bench.doc(execution_id) == doc
    assert texts(doc["phases"][0]["log"]).count("info attempt 1 starts") == 1


def test_cancelling_a_finished_or_unknown_execution(bench: Bench) -> None:
    process, _ = steps("QUICK", "A")
    bench.add(process)
    execution_id = bench.record("QUICK")
    assert bench.runner().run(execution_id) == "success"
    finished = bench.doc(execution_id)
    revoked: list[str] = []

    with pytest.raises(Conflict, match=r"already finished \(success\)"):
        cancel_execution(bench.store, execution_id, user="carol", revoke=revoked.append)
    with pytest.raises(NotFound):
        cancel_execution(bench.store, "no-such-execution", user="carol")
    with pytest.raises(NotFound):
        cancel_execution(bench.store, execution_id, user="carol", environment="staging")
    assert bench.doc(execution_id) == finished
    assert revoked == []


# --- the recorder's control ----------------------------------------------------------------


def test_run_control_sleep_wakes_at_once_when_aborted() -> None:
    control = RunControl()
    timer = threading.Timer(0.05, control.abort, args=("Cancelled by carol",))
    timer.start()
    try:
        with pytest.raises(RunAborted, match="Cancelled by carol"):
            control.sleep(60)
    finally:
        timer.cancel()
    control.abort("a second reason")
    assert control.reason == "Cancelled by carol"  # the first reason stands
