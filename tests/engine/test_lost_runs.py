"""Issue 5, in process: fencing, retries, timeouts, cancellation, bounded logs, housekeeping.

Everything runs on a real SQLite file with the real `PhaseRunner`, `ExecutionRecorder`,
`TriggerService` and `Housekeeper`; only the broker is replaced, by `Broker` (a recorder of
dispatches that can be made to fail). A worker that dies is a runner whose phase hangs without
heartbeats; the lost-run timeout is crossed with a fixed clock handed to the housekeeper.
Phases that must be observed mid-run block on events that the test sets, so nothing depends on
how fast this machine is: waits have deadlines, never speed limits.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from procexec.api.app import create_app
from procexec.engine.cancellation import cancel_execution as engine_cancel
from procexec.engine.config import Settings
from procexec.engine.constants import PhaseStatus, Scope
from procexec.engine.context import PhaseContext
from procexec.engine.control import RunAborted, RunControl
from procexec.engine.errors import Conflict, NotFound, StoreUnavailable
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token
from procexec.engine.trigger import TriggerService
from procexec.examples.demo import DEMO

T = TypeVar("T")

#: seconds without a heartbeat after which the housekeeper takes a run's worker for dead
LOST_TIMEOUT = 5.0
#: seconds after which a run still `triggered` is sent again
REDISPATCH_AFTER = 10.0
#: the recorder's flush interval in these tests: short, so readers see lines soon
FLUSH = 0.02
#: no heartbeat after the claim: the worker of such a runner looks dead once the clock moves
NO_HEARTBEAT = 3600.0
#: the longest any wait in this module may take before the test fails
DEADLINE = 15.0

ENV = "production"


class Broker:
    """Stands in for Celery: records `(execution_id, delay)`, or raises while `down`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.failures = 0
        self.down = False

    def __call__(self, execution_id: str, delay: float) -> None:
        if self.down:
            self.failures += 1
            raise ConnectionError("Error 111 connecting to the broker: Connection refused")
        self.calls.append((execution_id, delay))

    @property
    def ids(self) -> list[str]:
        return [execution_id for execution_id, _ in self.calls]


class Background:
    """Runs a call in a thread; `join` returns its result or raises its error."""

    def __init__(self, store: ExecutionStore, call: Callable[[], Any], name: str) -> None:
        self.store = store
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(call,), name=name, daemon=True)
        self.thread.start()

    def _main(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # handed to the test by join()
            self.error = exc
        finally:
            self.store.release_thread()

    def join(self, timeout: float = DEADLINE) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not stop within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def cancel_execution(store: ExecutionStore, execution_id: str, **options: Any) -> dict[str, Any]:
    """`engine.cancellation.cancel_execution`, its document typed for indexing."""
    return dict(engine_cancel(store, execution_id, **options))


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def texts(lines: list[str]) -> list[str]:
    """Log lines without their timestamp: `info Completed EXTRACT`."""
    return [line.split(" ", 1)[1] for line in lines]


@dataclass
class Bench:
    """A real SQLite store, a registry of test processes, a broker stand-in and a housekeeper."""

    store: SQLiteStore
    registry: ProcessRegistry
    broker: Broker
    triggers: TriggerService
    housekeeper: Housekeeper
    runners: list[PhaseRunner] = field(default_factory=list)

    def add(self, process: Process) -> Process:
        self.registry.add(process)
        return process

    def runner(self, worker_id: str = "w1", **options: Any) -> PhaseRunner:
        options.setdefault("flush_interval", FLUSH)
        runner = PhaseRunner(
            self.store, self.registry, worker_id=worker_id, triggers=self.triggers, **options
        )
        self.runners.append(runner)
        return runner

    def record(self, name: str, body: dict[str, Any] | None = None, **options: Any) -> str:
        doc = self.triggers.record(name, run_as="alice", environment=ENV, body=body, **options)
        return str(doc["_id"])

    def doc(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        assert doc is not None, execution_id
        return doc

    def phase(self, execution_id: str, name: str) -> dict[str, Any]:
        phases = {phase["name"]: phase for phase in self.doc(execution_id)["phases"]}
        assert name in phases, f"no phase {name} in {sorted(phases)}"
        return phases[name]

    def status(self, execution_id: str) -> str:
        return str(self.doc(execution_id)["status"])


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    store = SQLiteStore(tmp_path / "data" / "procexec.db")
    registry = ProcessRegistry([DEMO])
    broker = Broker()
    triggers = TriggerService(store, registry, broker)
    housekeeper = Housekeeper(
        store,
        registry,
        triggers,
        lost_timeout=LOST_TIMEOUT,
        redispatch_after=REDISPATCH_AFTER,
    )
    yield Bench(store, registry, broker, triggers, housekeeper)
    store.close()


def later(seconds: float) -> datetime:
    """A fixed clock `seconds` from now, for the housekeeper."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def past_lost_timeout() -> datetime:
    return later(LOST_TIMEOUT + 1)


def steps(name: str, *phases: str, **options: Any) -> tuple[Process, dict[str, int]]:
    """A process whose phases count their calls and pass a growing list along."""
    process = Process(name, **options)
    calls: dict[str, int] = {}

    def make(phase: str) -> Callable[[PhaseContext, Any], Any]:
        def run(ctx: PhaseContext, previous: Any) -> Any:
            calls[phase] = calls.get(phase, 0) + 1
            ctx.log(f"{phase} ran")
            return [*(previous or []), phase]

        return run

    for phase in phases:
        process.phase(phase)(make(phase))
    return process, calls


# --- fencing -------------------------------------------------------------------------------


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
    assert recorder.end_phase(0, PhaseStatus.SUCCESS, "Completed EXTRACT") is False
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


# --- retries -------------------------------------------------------------------------------


class StatusWatcher:
    """Polls an execution's status and message in a thread, keeping each change once."""

    def __init__(self, store: ExecutionStore, execution_id: str) -> None:
        self.store = store
        self.execution_id = execution_id
        self.seen: list[tuple[str, str]] = []
        #: the document as first seen in each `waiting` spell
        self.waiting_docs: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = Background(store, self._watch, "status-watcher")

    def _watch(self) -> None:
        while True:
            stopping = self._stop.is_set()  # one last look after the run has returned
            doc = self.store.get(self.execution_id)
            assert doc is not None
            state = (doc["status"], doc["message"])
            if not self.seen or self.seen[-1] != state:
                self.seen.append(state)
                if state[0] == "waiting":
                    self.waiting_docs.append(doc)
            if stopping:
                return
            time.sleep(0.002)

    def stop(self) -> list[tuple[str, str]]:
        self._stop.set()
        self._thread.join()
        return self.seen

    def statuses(self) -> list[str]:
        collapsed: list[str] = []
        for status, _ in self.seen:
            if not collapsed or collapsed[-1] != status:
                collapsed.append(status)
        return collapsed


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    items = iter(whole)
    return all(any(item == wanted for item in items) for wanted in part)


def flaky(process: Process, phase: str, failures: int, **options: Any) -> list[tuple[int, str]]:
    """Add a phase that fails its first `failures` attempts; returns (attempt, status) seen."""
    attempts: list[tuple[int, str]] = []

    @process.phase(phase, **options)
    def run(ctx: PhaseContext, previous: Any) -> str:
        doc = ctx._store.get(ctx.execution_id)
        assert doc is not None
        attempts.append((ctx.attempt, f"{doc['status']}: {doc['message']}"))
        ctx.log(f"attempt {ctx.attempt} starts")
        ctx.sleep(0.15)  # long enough for the watcher to see `retrying`
        if ctx.attempt <= failures:
            raise RuntimeError(f"flaky attempt {ctx.attempt}")
        ctx.log(f"attempt {ctx.attempt} worked")
        return "fetched"

    return attempts


def test_retries_show_waiting_then_retrying_keep_every_log_and_succeed(bench: Bench) -> None:
    process = Process("FLAKY", retries=2, retry_delay=0.3)
    attempts = flaky(process, "FETCH", failures=2)
    process.phase("STORE")(lambda ctx, previous: previous)
    bench.add(process)
    execution_id = bench.record("FLAKY")

    watcher = StatusWatcher(bench.store, execution_id)
    try:
        assert bench.runner().run(execution_id) == "success"
    finally:
        watcher.stop()

    # Each attempt starts while the run says so: `running`, then `retrying` (n of 3).
    assert attempts == [
        (1, "running: Running FETCH"),
        (2, "retrying: Retrying FETCH (attempt 2 of 3)"),
        (3, "retrying: Retrying FETCH (attempt 3 of 3)"),
    ]
    # Between attempts, readers saw `waiting`, then `retrying`, twice, then the end.
    statuses = watcher.statuses()
    expected = ["running", "waiting", "retrying", "waiting", "retrying", "success"]
    assert is_subsequence(expected, statuses), statuses
    assert statuses.count("waiting") == 2, statuses
    assert ("waiting", "Waiting to retry FETCH (attempt 2 of 3)") in watcher.seen
    assert ("waiting", "Waiting to retry FETCH (attempt 3 of 3)") in watcher.seen
    # While waiting, the failed attempt's log is already visible.
    first_wait = watcher.waiting_docs[0]["phases"][0]["log"]
    assert "info attempt 1 starts" in texts(first_wait)
    assert any("RuntimeError: flaky attempt 1" in line for line in first_wait)

    doc = bench.doc(execution_id)
    assert (doc["status"], doc["message"]) == ("success", "Completed Successfully")
    assert [phase["name"] for phase in doc["phases"]] == ["FETCH", "STORE"]  # one entry
    fetch = doc["phases"][0]
    assert (fetch["status"], fetch["message"]) == ("success", "Completed FETCH")
    log = texts(fetch["log"])
    kept = [line for line in log if line.startswith(("info attempt", "info Retrying"))]
    assert kept == [
        "info attempt 1 starts",
        "info Retrying FETCH in 0.3 s (attempt 2 of 3)",
        "info attempt 2 starts",
        "info Retrying FETCH in 0.3 s (attempt 3 of 3)",
        "info attempt 3 starts",
        "info attempt 3 worked",
    ]
    errors = [line for line in log if line.startswith("error ")]
    assert len(errors) == 2
    assert "RuntimeError: flaky attempt 1" in errors[0]
    assert "RuntimeError: flaky attempt 2" in errors[1]
    assert log[-1] == "info Completed FETCH"


def test_exhausted_retries_fail_the_run_with_every_attempt_logged(bench: Bench) -> None:
    process = Process("HOPELESS", retries=2, retry_delay=0.01)
    attempts = flaky(process, "FETCH", failures=99)
    process.phase("LOAD")(lambda ctx, previous: pytest.fail("a phase after a failure ran"))
    bench.add(process)
    execution_id = bench.record("HOPELESS")

    assert bench.runner().run(execution_id) == "failed"

    assert [attempt for attempt, _ in attempts] == [1, 2, 3]
    doc = bench.doc(execution_id)
    assert doc["status"] == "failed"
    assert doc["message"] == "Failed in FETCH: RuntimeError: flaky attempt 3"
    assert "end" in doc
    assert [phase["name"] for phase in doc["phases"]] == ["FETCH"]  # LOAD never ran
    fetch = doc["phases"][0]
    assert (fetch["status"], fetch["message"]) == ("failed", "RuntimeError: flaky attempt 3")
    log = texts(fetch["log"])
    assert [line for line in log if line.startswith("info attempt")] == [
        "info attempt 1 starts",
        "info attempt 2 starts",
        "info attempt 3 starts",
    ]
    assert sum("RuntimeError: flaky attempt" in line for line in log) == 3


def test_phase_retries_override_the_process_ones(bench: Bench) -> None:
    process = Process("MIXED", retries=5, retry_delay=0.01)
    tolerant = flaky(process, "TOLERANT", failures=2, retries=2, retry_delay=0.01)
    strict = flaky(process, "STRICT", failures=1, retries=0)
    bench.add(process)
    execution_id = bench.record("MIXED")

    assert bench.runner().run(execution_id) == "failed"

    assert [attempt for attempt, _ in tolerant] == [1, 2, 3]
    assert [attempt for attempt, _ in strict] == [1]  # the process's 5 retries do not apply
    doc = bench.doc(execution_id)
    assert doc["message"] == "Failed in STRICT: RuntimeError: flaky attempt 1"
    assert [(p["name"], p["status"]) for p in doc["phases"]] == [
        ("TOLERANT", "success"),
        ("STRICT", "failed"),
    ]


def test_demo_fail_times_with_retries_succeeds(bench: Bench) -> None:
    """DEMO's `fail_times`, in a copy of DEMO that retries: the requested failures, then success."""
    retrying = Process("DEMO_RETRYING", retries=2, retry_delay=0.01)
    for phase in DEMO.phases:
        retrying.phase(phase.name)(phase.function)
    bench.add(retrying)
    execution_id = bench.record(
        "DEMO_RETRYING", {"fail_in": "TRANSFORM", "fail_times": 2, "log_lines": 2}
    )

    assert bench.runner().run(execution_id) == "success"
    transform = texts(bench.phase(execution_id, "TRANSFORM")["log"])
    assert transform.count("info TRANSFORM line 1 of 2") == 3  # every attempt's lines kept
    assert sum("failure requested in TRANSFORM" in line for line in transform) == 2


# --- timeouts ------------------------------------------------------------------------------


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


# --- cancellation --------------------------------------------------------------------------


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


# --- bounded logs --------------------------------------------------------------------------


MARKER = re.compile(
    r"^warning \.\.\. (\d+) log lines dropped: a phase keeps its first 50 and its last 49 lines"
)


def test_a_phase_keeps_its_first_and_last_lines_with_a_marker_even_while_running(
    bench: Bench,
) -> None:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": "/unused", "PROCEXEC_MAX_LOG_LINES": "100"})
    assert settings.max_log_lines == 100
    logged, release = threading.Event(), threading.Event()
    process = Process("NOISY")

    @process.phase("SHOUT")
    def shout(ctx: PhaseContext, previous: Any) -> None:
        for number in range(1, 5001):
            ctx.log(f"line {number}")
        logged.set()
        assert release.wait(DEADLINE)

    @process.phase("WHISPER")
    def whisper(ctx: PhaseContext, previous: Any) -> None:
        for number in range(1, 4):
            ctx.log(f"quiet {number}")

    bench.add(process)
    execution_id = bench.record("NOISY")
    runner = bench.runner(max_log_lines=settings.max_log_lines)
    run = Background(bench.store, lambda: runner.run(execution_id), "runner")
    try:
        assert logged.wait(DEADLINE)
        # While the phase runs, readers see the newest line, and never more than the cap.

        def latest() -> list[str] | None:
            log = texts(bench.phase(execution_id, "SHOUT")["log"])
            return log if log and log[-1] == "info line 5000" else None

        live = wait_for(latest, "the latest line to reach the document")
    finally:
        release.set()
    assert run.join() == "success"

    assert len(live) == 100
    assert live[:50] == [f"info line {n}" for n in range(1, 51)]
    marker = MARKER.match(live[50])
    assert marker, live[50]
    assert int(marker[1]) == 5000 - 99
    assert live[51:] == [f"info line {n}" for n in range(4952, 5001)]

    doc = bench.doc(execution_id)
    final = texts(doc["phases"][0]["log"])
    assert len(final) == 100
    assert final[:50] == [f"info line {n}" for n in range(1, 51)]
    marker = MARKER.match(final[50])
    assert marker, final[50]
    assert int(marker[1]) == 5001 - 99  # the runner's closing line pushed one more out
    assert final[51:] == [*(f"info line {n}" for n in range(4953, 5001)), "info Completed SHOUT"]
    # Another phase has its own cap, untouched.
    assert texts(doc["phases"][1]["log"]) == [
        "info quiet 1",
        "info quiet 2",
        "info quiet 3",
        "info Completed WHISPER",
    ]
    assert len(json.dumps(doc)) < 100 * 2 * 200  # bounded whatever the phase printed


DROPPED_5_4 = "log lines dropped: a phase keeps its first 5 and its last 4 lines ..."


def test_a_resumed_phase_keeps_one_marker_that_counts_every_dropped_line(bench: Bench) -> None:
    """A phase resumed after a worker loss starts from its capped log, marker included."""
    execution_id = bench.record("DEMO")
    first = bench.runner("w1").claim(execution_id)
    assert first is not None
    recorder = ExecutionRecorder(
        bench.store, execution_id, flush_interval=FLUSH, token=first, max_log_lines=10
    )
    index = recorder.start_phase("EXTRACT", "Running EXTRACT")
    for number in range(1, 31):
        recorder.log(index, f"2021-07-01T16:30:13.000000000Z[UTC] info line {number}")
    assert recorder.flush()
    lost = texts(bench.phase(execution_id, "EXTRACT")["log"])
    assert lost[5] == f"warning ... 21 {DROPPED_5_4}"

    bench.housekeeper.run_once(past_lost_timeout())
    second = bench.runner("w2").claim(execution_id)
    assert second is not None
    resumed = ExecutionRecorder(
        bench.store,
        execution_id,
        flush_interval=FLUSH,
        token=second,
        max_log_lines=10,
        phases=bench.doc(execution_id)["phases"],
    )
    resumed.start_phase("EXTRACT", "Resuming EXTRACT")
    for number in range(31, 41):
        resumed.log(index, f"2021-07-01T16:30:14.000000000Z[UTC] info line {number}")
    assert resumed.flush()

    log = texts(bench.phase(execution_id, "EXTRACT")["log"])
    assert len(log) == 10
    assert log[:5] == [f"info line {n}" for n in range(1, 6)]
    assert [line for line in log if "dropped" in line] == [f"warning ... 31 {DROPPED_5_4}"]
    assert log[6:] == [f"info line {n}" for n in range(37, 41)]


# --- housekeeping: lost runs ---------------------------------------------------------------


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
            lambda: (
                "info first worker, about to die"
                in texts(bench.phase(execution_id, "TRANSFORM")["log"])
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


# --- housekeeping: the document is the outbox ----------------------------------------------


def test_a_trigger_whose_dispatch_failed_is_accepted_and_sent_later(bench: Bench) -> None:
    bench.broker.down = True
    doc = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV)
    execution_id = doc["_id"]

    assert doc["status"] == "triggered"
    assert bench.broker.failures == 1
    assert bench.doc(execution_id) == doc
    assert bench.store.get_meta(execution_id)["dispatched"] is None  # for the next pass

    # The broker is still down: the next pass tries, fails, and keeps it for the one after.
    assert bench.housekeeper.run_once().redispatched == []
    assert bench.broker.failures == 2
    assert bench.status(execution_id) == "triggered"

    bench.broker.down = False
    assert bench.housekeeper.run_once().redispatched == [execution_id]
    assert bench.broker.calls == [(execution_id, 0.0)]
    # Sent: not again until `redispatch_after` has passed without a worker taking it.
    assert bench.housekeeper.run_once().redispatched == []
    assert bench.housekeeper.run_once(later(REDISPATCH_AFTER + 1)).redispatched == [execution_id]

    assert bench.runner().run(execution_id) == "success"
    assert bench.housekeeper.run_once(later(REDISPATCH_AFTER * 10)).redispatched == []
    assert len(bench.broker.calls) == 2


def test_a_delayed_run_is_not_redispatched_before_it_is_due(bench: Bench) -> None:
    bench.broker.down = True
    delayed = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV, delay=120)
    bench.broker.down = False
    sent = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV, delay=120)
    assert bench.broker.calls == [(sent["_id"], 120)]

    for seconds in (0, REDISPATCH_AFTER + 1, 100):
        assert bench.housekeeper.run_once(later(seconds)).redispatched == [], seconds
    due = bench.housekeeper.run_once(later(121)).redispatched
    assert sorted(due) == sorted([delayed["_id"], sent["_id"]])


def test_the_api_accepts_a_trigger_while_the_broker_is_down(bench: Bench, tmp_path: Path) -> None:
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path / "data")})
    app = create_app(settings, store=bench.store, registry=bench.registry, dispatch=bench.broker)
    token = create_token(bench.store, "alice", Scope.RUN)
    bench.broker.down = True
    with TestClient(app) as client:
        response = client.post(
            "/service/process-exec/v1",
            json={"name": "DEMO"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202, response.text
    doc = response.json()
    assert doc["status"] == "triggered"
    assert bench.broker.failures == 1
    assert bench.doc(doc["_id"]) == doc

    bench.broker.down = False
    assert bench.housekeeper.run_once().redispatched == [doc["_id"]]
    assert bench.runner().run(doc["_id"]) == "success"


# --- the store down ------------------------------------------------------------------------


def count_executions(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        value: int = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    finally:
        conn.close()
    return value


def test_a_store_whose_folder_is_gone_raises_store_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "volume"
    store = SQLiteStore(folder / "procexec.db")
    broker = Broker()
    triggers = TriggerService(store, ProcessRegistry([DEMO]), broker)
    kept = triggers.trigger("DEMO", run_as="alice", environment=ENV)
    store.close()  # this thread's connection; the next call opens a new one
    folder.rename(tmp_path / "volume.unmounted")  # the volume goes away
    try:
        with pytest.raises(StoreUnavailable, match="unable to open database file"):
            triggers.trigger("DEMO", run_as="alice", environment=ENV)
        with pytest.raises(StoreUnavailable, match="SQLite store"):
            store.get(kept["_id"])
        with pytest.raises(StoreUnavailable):
            cancel_execution(store, kept["_id"], user="carol")
        keeper = Housekeeper(
            store, ProcessRegistry([DEMO]), triggers, lost_timeout=5, redispatch_after=5
        )
        with pytest.raises(StoreUnavailable):
            keeper.run_once()
        assert broker.calls == [(kept["_id"], 0.0)]  # nothing dispatched for the refused one
    finally:
        store.close()
        (tmp_path / "volume.unmounted").rename(folder)
    assert count_executions(folder / "procexec.db") == 1  # nothing half-written
    again = SQLiteStore(folder / "procexec.db")
    try:
        assert again.get(kept["_id"]) == kept
    finally:
        again.close()


class FailingRegistry(ProcessRegistry):
    """A registry whose lookup can pull the store's volume away: the store dies mid-request."""

    def __init__(self, store: SQLiteStore, folder: Path) -> None:
        super().__init__([DEMO])
        self.store = store
        self.folder = folder
        self.pull = False

    def get(self, name: str) -> Process | None:
        if self.pull:
            self.pull = False
            self.folder.rename(self.folder.with_name("volume.unmounted"))
            self.store.close()  # this thread's connection drops with it
        return super().get(name)


def test_the_api_answers_503_when_the_store_is_down_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "volume"
    away = tmp_path / "volume.unmounted"
    store = SQLiteStore(folder / "procexec.db")
    registry = FailingRegistry(store, folder)
    broker = Broker()
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(folder)})
    app = create_app(settings, store=store, registry=registry, dispatch=broker)
    headers = {"Authorization": f"Bearer {create_token(store, 'alice', Scope.RUN)}"}
    store.close()
    url = "/service/process-exec/v1"
    try:
        # Down before the request: the token cannot even be checked.
        folder.rename(away)
        with TestClient(app) as client:
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == 503
            assert "SQLite store" in body["error"], body
            assert response.headers["x-odsl-error"]
            assert client.get(url, headers=headers).status_code == 503

            # Back: the same app recovers.
            away.rename(folder)
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 202, response.text
            accepted = response.json()["_id"]

            # Down in the middle of a trigger, after the token was checked.
            registry.pull = True
            response = client.post(url, json={"name": "DEMO"}, headers=headers)
            assert response.status_code == 503, response.text
            assert "SQLite store" in response.json()["error"]
            away.rename(folder)
            listed = client.get(url, headers=headers)
            assert listed.status_code == 200, listed.text
            assert [doc["_id"] for doc in listed.json()] == [accepted]
    finally:
        store.close()
        if away.exists():
            away.rename(folder)
    assert count_executions(folder / "procexec.db") == 1
    assert broker.ids == [accepted]


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


def test_a_removed_store_folder_is_not_silently_recreated(tmp_path: Path) -> None:
    """Removed for good (not renamed): a new connection fails instead of starting empty."""
    folder = tmp_path / "volume"
    store = SQLiteStore(folder / "procexec.db")
    store.close()
    shutil.rmtree(folder)
    try:
        with pytest.raises(StoreUnavailable):
            store.get("anything")
        assert not folder.exists()
    finally:
        store.close()
