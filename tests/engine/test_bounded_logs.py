"""Bounded logs: a phase keeps its first and last lines with a marker counting those dropped,
while it runs and after a worker loss (the bench: tests/engine/runs.py).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from procexec.engine.context import PhaseContext
from procexec.engine.process import Process
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.settings import Settings
from tests.engine.runs import DEADLINE, FLUSH, Background, Bench, past_lost_timeout, texts, wait_for

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
