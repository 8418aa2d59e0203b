"""Retries: a failed phase is retried as its process or itself says, its readers see
`waiting` then `retrying`, and every attempt's log is kept (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from procexec.engine.process import Process
from procexec.engine.store.base import ExecutionStore
from procexec.examples.demo import DEMO
from tests.engine.runs import Background, Bench, flaky, texts


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
    retrying = Process("DEMO_RETRYING", retries=2, retry_delay=0.01, params=DEMO.params)
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
