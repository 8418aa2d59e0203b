"""Bounded logs: a phase keeps its first and last lines with a marker counting those dropped,
while it runs and after a worker loss (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, cast

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.errors import StoreUnavailable
from procexec.engine.process import Process
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore, Update
from tests.engine.runs import DEADLINE, FLUSH, Background, Bench, past_lost_timeout, texts, wait_for
from tests.engine.store.documents import execution

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


class AppliedThenLost:
    """A store whose writes of log lines are applied, then reported failed, as when the
    connection drops before the server's answer arrives: the recorder keeps the lines and
    sends them again."""

    def __init__(self, store: ExecutionStore, failures: int) -> None:
        self.store = store
        self.failures = failures

    def update(self, execution_id: str, change: Update) -> bool:
        applied = self.store.update(execution_id, change)
        if change.push and self.failures:
            self.failures -= 1
            raise StoreUnavailable("the connection dropped before the answer")
        return applied

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_log_lines_pushed_again_never_grow_past_the_cap_in_the_store(
    store: ExecutionStore,
) -> None:
    """On each store: the cap holds in the store itself (the push's limit), not only in the
    recorder's memory."""
    doc = execution("r1", "DEMO", "running", "2021-07-01T16:30:07.858Z")
    store.insert(doc, meta={"worker": "token-1"})
    flaky = AppliedThenLost(store, failures=0)
    recorder = ExecutionRecorder(
        cast(ExecutionStore, flaky),
        "r1",
        flush_interval=FLUSH,
        token="token-1",
        max_log_lines=10,
    )
    index = recorder.start_phase("EXTRACT", "Running EXTRACT")
    assert recorder.flush()  # the phase begun in the store
    flaky.failures = 3
    lines = [f"2021-07-01T16:30:13.000000000Z[UTC] info line {n}" for n in range(1, 5)]
    for line in lines:
        recorder.log(index, line)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            recorder.flush()
    assert recorder.flush()  # the fourth time, answered: the same four lines once more
    stored = store.get("r1")
    assert stored is not None
    log = stored["phases"][index]["log"]
    assert len(log) == 10  # 16 lines pushed in all
    assert log == [*lines, *lines, *lines[:2]]


def test_a_push_keeps_at_most_its_limit_of_first_items(store: ExecutionStore) -> None:
    store.insert(execution("p1", "DEMO", "running", "2021-07-01T16:30:07.858Z"))
    phase = {"name": "EXTRACT", "status": "running", "log": []}
    assert store.update("p1", Update(push={"phases": [phase]}, push_limit={"phases": 3}))
    limited = {"phases.0.log": 5}
    assert store.update("p1", Update(push={"phases.0.log": ["a", "b", "c"]}, push_limit=limited))
    assert store.update("p1", Update(push={"phases.0.log": ["d", "e", "f"]}, push_limit=limited))
    assert store.update("p1", Update(push={"phases.0.log": ["g"]}, push_limit=limited))
    stored = store.get("p1")
    assert stored is not None
    assert stored["phases"] == [{**phase, "log": ["a", "b", "c", "d", "e"]}]
    assert store.update("p1", Update(push={"phases.0.log": ["g", "h"]}))  # no limit: all kept
    stored = store.get("p1")
    assert stored is not None
    assert stored["phases"][0]["log"] == ["a", "b", "c", "d", "e", "g", "h"]
