"""`engine.run_events`: a journal that starts at the run's first change tells statuses that
are never null: a run is recorded `triggered`, until a change says otherwise."""

from __future__ import annotations

from procexec.engine.run_events import RunEvents


def test_a_parked_runs_first_change_tells_it_triggered_then_running() -> None:
    events = RunEvents(max_log_lines=100)
    parked = events.feed(1, {"set": {"message": "Waiting for a slot: SOLO has 1 running"}})
    assert [(event.kind, event.data) for event in parked] == [
        ("status", {"status": "triggered", "message": "Waiting for a slot: SOLO has 1 running"})
    ]
    running = events.feed(2, {"set": {"status": "running", "message": "Running EXTRACT"}})
    assert [event.data["status"] for event in running if event.kind == "status"] == ["running"]
    assert events.feed(2, {"set": {"message": "again"}}) == []  # a number seen is not told twice
