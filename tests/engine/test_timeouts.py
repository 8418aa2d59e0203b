"""Timeouts of a phase and of a run: the watchdog fails the run while the phase still hangs,
and a phase or a wait between retries stops at its next sleep (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.control import RunAborted
from procexec.engine.process import Process
from tests.engine.runs import DEADLINE, Background, Bench, flaky, wait_for


def stuck_process(name: str, **options: Any) -> tuple[Process, threading.Event, threading.Event]:
    """FIRST, then STUCK (hangs without ever calling ctx until released), then AFTER."""
    entered, release = threading.Event(), threading.Event()
    process = Process(name, **{key: value for key, value in options.items() if key != "phase"})

    @process.phase("FIRST")
    def first(ctx: PhaseContext, previous: Any) -> int:
        ctx.sleep(0.05)
        return 1

    @process.phase("STUCK", **options.get("phase", {}))
    def stuck(ctx: PhaseContext, previous: Any) -> int:
        entered.set()
        release.wait(DEADLINE)  # a blocking call that never looks at ctx
        return 2

    @process.phase("AFTER")
    def after(ctx: PhaseContext, previous: Any) -> int:
        pytest.fail("a phase after a timeout ran")

    return process, entered, release


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"phase": {"timeout": 0.3}}, "the phase ran longer than its 0.3 s limit"),
        ({"timeout": 0.4}, "the run ran longer than its 0.4 s limit"),
    ],
    ids=["phase-timeout", "run-timeout"],
)
def test_a_timeout_fails_the_run_while_the_phase_still_hangs(
    bench: Bench, options: dict[str, Any], why: str
) -> None:
    process, entered, release = stuck_process("HANGS", **options)
    bench.add(process)
    execution_id = bench.record("HANGS")
    run = Background(bench.store, lambda: bench.runner().run(execution_id), "runner")
    try:
        assert entered.wait(DEADLINE)
        # The watchdog writes the failure while the phase is still blocked.
        wait_for(lambda: bench.status(execution_id) == "failed", "the watchdog to fail the run")
        failed = bench.doc(execution_id)
        assert run.thread.is_alive()
    finally:
        release.set()
    assert run.join() == "failed"

    assert failed["message"] == f"Timed out in STUCK: {why}"
    assert "end" in failed
    stuck = failed["phases"][1]
    assert (stuck["name"], stuck["status"]) == ("STUCK", "failed")
    assert stuck["message"] == f"Timed out: {why}"
    assert "end" in stuck
    # The phase returned later: nothing of it (no "Completed", no next phase) was written.
    assert bench.doc(execution_id) == failed
    assert [phase["name"] for phase in failed["phases"]] == ["FIRST", "STUCK"]


def test_a_timeout_stops_a_phase_at_its_next_sleep(bench: Bench) -> None:
    process = Process("SLEEPY")
    woke: list[str] = []

    @process.phase("NAP", timeout=0.2)
    def nap(ctx: PhaseContext, previous: Any) -> None:
        try:
            ctx.sleep(60)
        except RunAborted as aborted:
            woke.append(aborted.reason)
            raise

    bench.add(process)
    execution_id = bench.record("SLEEPY")
    run = Background(bench.store, lambda: bench.runner().run(execution_id), "runner")
    assert run.join() == "failed"  # within the deadline, not after 60 s
    assert woke == ["timed out in NAP"]
    doc = bench.doc(execution_id)
    assert doc["message"] == "Timed out in NAP: the phase ran longer than its 0.2 s limit"


def test_a_run_timeout_also_ends_a_wait_between_retries(bench: Bench) -> None:
    process = Process("OVERDUE", retries=3, retry_delay=600, timeout=0.5)
    attempts = flaky(process, "FETCH", failures=99)
    bench.add(process)
    execution_id = bench.record("OVERDUE")

    run = Background(bench.store, lambda: bench.runner().run(execution_id), "runner")
    assert run.join() == "failed"  # within the deadline, not after the 600 s retry delay

    assert [attempt for attempt, _ in attempts] == [1]
    doc = bench.doc(execution_id)
    assert doc["message"] == "Timed out in FETCH: the run ran longer than its 0.5 s limit"
    assert doc["phases"][0]["status"] == "failed"
