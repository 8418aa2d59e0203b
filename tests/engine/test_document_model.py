"""Every document the engine writes is an `engine.document.Execution`: real runs of each
outcome on a real SQLite store (the bench: tests/engine/runs.py), each document checked after
every write the engine makes to it, against the models and against their JSON Schema; and the
fields those runs write are the models' fields, each described."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from procexec.engine.context import PhaseContext
from procexec.engine.document import DataUpdates, Execution, Phase, field_names, json_schemas
from procexec.engine.domain import PHASES, Trigger
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import Update
from tests.documents import assert_execution, execution
from tests.engine.runs import (
    DEADLINE,
    Background,
    Bench,
    cancel_execution,
    flaky,
    past_lost_timeout,
    steps,
    wait_for,
)
from tests.engine.test_lost_runs import start_dead_run
from tests.engine.test_timeouts import stuck_process


class Written:
    """Every state of every document the bench's store was given, read back after each
    insert and each update that applied, from whichever thread wrote it."""

    def __init__(self, bench: Bench) -> None:
        self.docs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        store = bench.store
        insert, update = store.insert, store.update

        def read_back(execution_id: str) -> None:
            doc = store.get(execution_id)
            assert doc is not None
            with self._lock:
                self.docs.append(doc)

        def inserted(doc: Any, meta: Any = None) -> None:
            insert(doc, meta=meta)
            read_back(doc["_id"])

        def updated(execution_id: str, change: Update) -> bool:
            applied = update(execution_id, change)
            if applied:
                read_back(execution_id)
            return applied

        store.insert = inserted  # type: ignore[method-assign]
        store.update = updated  # type: ignore[method-assign]

    def of(self, execution_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for doc in self.docs if doc["_id"] == execution_id]


@pytest.fixture
def written(bench: Bench) -> Iterator[Written]:
    seen = Written(bench)
    yield seen
    for doc in seen.docs:
        assert_execution(doc)


def reporting() -> Process:
    """A process that reports series, curves, a loader message and a warning."""
    process = Process("REPORTING")

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> int:
        ctx.series_updated("2026-12-01", ["S1", "S2"])
        ctx.warning("one row had no date")
        return 1

    @process.phase("LOAD")
    def load(ctx: PhaseContext, previous: Any) -> int:
        ctx.curves_updated("2026-12-01", ["C1"])
        ctx.loader_message("Updated 2 series for 2026-12-01")
        return previous

    return process


def test_a_run_reporting_data_a_loader_message_and_a_warning(
    bench: Bench, written: Written
) -> None:
    bench.add(reporting())
    execution_id = bench.record("REPORTING")
    assert bench.runner().run(execution_id) == "warning"
    final = Execution.model_validate(bench.doc(execution_id))
    assert final.loader_message == "Updated 2 series for 2026-12-01"
    assert final.data == DataUpdates(
        series={"2026-12-01": ["S1", "S2"]}, curves={"2026-12-01": ["C1"]}
    )
    assert written.of(execution_id)[0]["status"] == "triggered"


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, "success"), ({"fail_in": "TRANSFORM"}, "failed"), ({"log_lines": 40}, "success")],
    ids=["success", "failed", "log-capped"],
)
def test_a_demo_run(bench: Bench, written: Written, body: dict[str, Any], status: str) -> None:
    execution_id = bench.record(
        "DEMO",
        body=body,
        trigger=Trigger.SCHEDULED,
        reason="crontab(DEMO,Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time))",
    )
    assert bench.runner(max_log_lines=10).run(execution_id) == status
    final = Execution.model_validate(bench.doc(execution_id))
    assert len(written.of(execution_id)) >= 3  # recorded, claimed, ended at least
    assert all(len(phase.log) <= 10 for phase in final.phases)


def test_retries_waiting_and_retrying(bench: Bench, written: Written) -> None:
    process = Process("FLAKY", retries=1, retry_delay=0.05)
    flaky(process, "FETCH", failures=1)
    bench.add(process)
    execution_id = bench.record("FLAKY")
    assert bench.runner().run(execution_id) == "success"
    statuses = {doc["status"] for doc in written.of(execution_id)}
    assert {"waiting", "retrying", "success"} <= statuses


def test_cancelled_before_and_while_running(bench: Bench, written: Written) -> None:
    waiting = bench.record("DEMO")
    assert cancel_execution(bench.store, waiting, user="alice")["status"] == "failed"
    running = bench.record("DEMO", body={"sleep": 30})
    run = Background(bench.store, lambda: bench.runner().run(running), "runner")
    wait_for(lambda: bench.doc(running)["phases"], "the run's first phase")
    cancel_execution(bench.store, running, user="alice")
    assert run.join() == "failed"
    phases = bench.doc(running)["phases"]
    assert phases[0]["status"] == "failed" and "end" in phases[0]


def test_timed_out(bench: Bench, written: Written) -> None:
    process, entered, release = stuck_process("HANGS", phase={"timeout": 0.2})
    bench.add(process)
    execution_id = bench.record("HANGS")
    run = Background(bench.store, lambda: bench.runner().run(execution_id), "runner")
    try:
        assert entered.wait(DEADLINE)
        wait_for(lambda: bench.status(execution_id) == "failed", "the timeout")
    finally:
        release.set()
    assert run.join() == "failed"


def test_lost_then_resumed_and_lost_then_failed(bench: Bench, written: Written) -> None:
    resumable, _ = steps("RESUMABLE", "EXTRACT", "LOAD")
    fragile, _ = steps("FRAGILE", "EXTRACT", "LOAD", on_lost="fail")
    bench.add(resumable)
    bench.add(fragile)
    resumed, failed = bench.record("RESUMABLE"), bench.record("FRAGILE")
    start_dead_run(bench, resumed, "w1")
    start_dead_run(bench, failed, "w1")
    report = bench.housekeeper.run_once(past_lost_timeout())
    assert (report.resumed, report.failed) == ([resumed], [failed])
    assert bench.runner("w2").run(resumed) == "success"


def test_handed_over_to_the_loader_queue(bench: Bench, written: Written) -> None:
    sent: list[str] = []
    bench.triggers.hand_off = lambda execution_id, ticket, process: sent.append(ticket)
    process, _ = steps("LOADING", *PHASES)
    bench.add(process)
    execution_id = bench.record("LOADING")
    assert bench.runner("w1").run(execution_id) == "running"
    assert bench.runner("loader").run(execution_id, sent[0]) == "success"


def test_an_unknown_process_and_a_subscription(bench: Bench, written: Written) -> None:
    upstream, _ = steps("UPSTREAM", "EXTRACT")
    downstream, _ = steps("DOWNSTREAM", "EXTRACT", follows={"UPSTREAM": ("success",)})
    bench.add(upstream)
    bench.add(downstream)
    execution_id = bench.record("UPSTREAM")
    assert bench.runner().run(execution_id) == "success"
    follower = bench.broker.ids[-1]
    assert bench.doc(follower)["trigger"] == "subscription"
    elsewhere = PhaseRunner(bench.store, ProcessRegistry([upstream]), worker_id="old")
    assert elsewhere.run(follower) == "failed"  # a worker that does not know DOWNSTREAM


def test_a_run_writes_every_field_of_the_models_and_no_other(
    bench: Bench, written: Written
) -> None:
    """The documents of a run that reports everything hold every field the models declare (a
    field the models keep that the engine no longer writes fails here, as one the engine
    writes that the models lack fails `extra="forbid"`); the models name the engine's fields."""
    bench.add(reporting())
    assert bench.runner().run(bench.record("REPORTING")) == "warning"
    docs = written.docs
    assert {key for doc in docs for key in doc} == set(field_names(Execution))
    phases = [phase for doc in docs for phase in doc["phases"]]
    assert {key for phase in phases for key in phase} == set(field_names(Phase))
    data = [doc["data"] for doc in docs if "data" in doc]
    assert {key for entry in data for key in entry} == set(field_names(DataUpdates))


@pytest.mark.parametrize("model", [Execution, Phase, DataUpdates])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    assert model.__doc__
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
    described = json_schemas()[model.__name__]
    assert set(described["properties"]) == set(field_names(model))
    assert all(value.get("description") for value in described["properties"].values())


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"end": None},
        {"status": "FAILED"},
        {"trigger": "api"},
        {"start": "2021-07-21T16:30:07Z"},
        {"phases": [{"name": "LOAD"}]},
        {"data": {"series": {}, "curves": {}, "name": "x"}},
    ],
    ids=["extra-field", "null", "status", "trigger", "timestamp", "phase", "data"],
)
def test_a_document_the_engine_would_not_write_is_refused(change: dict[str, Any]) -> None:
    doc = {**execution("ecb-1", "2021-07-21T16:30:07.858Z"), **change}
    with pytest.raises(ValidationError):
        Execution.model_validate(doc)
    with pytest.raises(AssertionError):
        assert_execution(doc)
