"""SEND hands the batch to the loader queue: the run's worker passes its claim to a ticket and
sends LOAD there; a loader's task exchanges the ticket for a claim of its own and runs LOAD.
The invariants hold across the hand-over: run once, never lost, never `running` for ever,
cancellable, and the document reads as if one worker had run it (the bench:
tests/engine/runs.py; Celery's part is in tests/integration and tests/installed).
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.domain import LOADER_TICKET
from procexec.engine.process import Process
from procexec.engine.runner import WAITING_FOR_LOADER
from tests.engine.runs import (
    DEADLINE,
    LOST_TIMEOUT,
    NO_HEARTBEAT,
    Background,
    Bench,
    cancel_execution,
    later,
    past_lost_timeout,
    steps,
    texts,
    wait_for,
)

PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")


class LoaderQueue:
    """Stands in for the loader queue: records `(execution_id, ticket, process)`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None]] = []
        self.down = False

    def __call__(self, execution_id: str, ticket: str, process: str | None) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to the broker: Connection refused")
        self.sent.append((execution_id, ticket, process))


@pytest.fixture
def loader(bench: Bench) -> LoaderQueue:
    queue = LoaderQueue()
    bench.triggers.hand_off = queue
    return queue


def reporting(name: str) -> tuple[Process, dict[str, list[str]]]:
    """A process whose phases report data and a warning before SEND hands over; LOAD reports
    its loader message. Returns it and the workers each phase ran on."""
    process = Process(name)
    ran: dict[str, list[str]] = {}

    def mark(ctx: PhaseContext) -> None:
        worker = str(ctx._store.get_meta(ctx.execution_id)["worker"]).split("#")[0]
        ran.setdefault(ctx.phase, []).append(worker)

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> list[int]:
        mark(ctx)
        ctx.series_updated("2026-12-01", ["S1", "S2"])
        return [1, 2, 3]

    @process.phase("TRANSFORM")
    def transform(ctx: PhaseContext, previous: list[int]) -> list[int]:
        mark(ctx)
        ctx.warning("one row had no date")
        return [value * 10 for value in previous]

    @process.phase("SEND")
    def send(ctx: PhaseContext, previous: list[int]) -> dict[str, Any]:
        mark(ctx)
        ctx.curves_updated("2026-12-01", ["C1"])
        return {"batch": previous}

    @process.phase("LOAD")
    def load(ctx: PhaseContext, previous: dict[str, Any]) -> int:
        mark(ctx)
        ctx.log(f"loading {previous['batch']}")
        ctx.series_updated("2026-12-01", ["S3"])
        ctx.loader_message(f"Loaded {len(previous['batch'])} rows")
        return len(previous["batch"])

    return process, ran


def test_send_hands_the_batch_to_the_loader_and_the_document_reads_as_one_run(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, ran = reporting("HANDED")
    bench.registry.add(process)
    execution_id = bench.record("HANDED")

    assert bench.runner("runner").run(execution_id) == "running"
    waiting = bench.doc(execution_id)
    assert waiting["status"] == "running"
    assert waiting["message"] == WAITING_FOR_LOADER
    assert [(p["name"], p["status"]) for p in waiting["phases"]] == [
        ("EXTRACT", "success"),
        ("TRANSFORM", "success"),
        ("SEND", "success"),
    ]
    [(sent_id, ticket, name)] = loader.sent
    assert (sent_id, name) == (execution_id, "HANDED")
    assert ticket.startswith(LOADER_TICKET)
    assert bench.store.get_meta(execution_id)["worker"] == ticket

    assert bench.runner("loader").run(execution_id, ticket) == "warning"
    assert ran == {
        "EXTRACT": ["runner"],
        "TRANSFORM": ["runner"],
        "SEND": ["runner"],
        "LOAD": ["loader"],
    }
    final = bench.doc(execution_id)
    assert [(p["name"], p["status"]) for p in final["phases"]] == [
        (name, "success") for name in PHASES
    ]
    # what the phases before the hand-over reported is carried to the end of the run
    assert final["status"] == "warning"
    assert final["message"] == "Completed with warnings"
    assert final["data"] == {
        "curves": {"2026-12-01": ["C1"]},
        "series": {"2026-12-01": ["S1", "S2", "S3"]},
    }
    assert final["loaderMessage"] == "Loaded 3 rows"
    load_log = final["phases"][3]["log"]
    assert texts(load_log[:1]) == ["info loading [10, 20, 30]"]
    assert load_log[1:] == ["Loaded 3 rows"]  # the loader's report closes LOAD's log
    assert bench.broker.calls == []  # nothing went back to the run queue


def test_a_copy_of_the_loader_message_or_a_wrong_ticket_runs_nothing(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("COPIES", *PHASES)
    bench.add(process)
    execution_id = bench.record("COPIES")
    bench.runner("runner").run(execution_id)
    [(_, ticket, _)] = loader.sent

    assert bench.runner("forger").run(execution_id, f"{LOADER_TICKET}forged") is None
    assert bench.status(execution_id) == "running"
    assert bench.runner("loader-1").run(execution_id, ticket) == "success"
    assert bench.runner("loader-2").run(execution_id, ticket) is None
    # a loader's ticket does not claim a triggered run either
    other = bench.record("COPIES")
    assert bench.runner("loader-3").run(other, ticket) is None
    assert bench.status(other) == "triggered"
    assert calls == {"EXTRACT": 1, "TRANSFORM": 1, "SEND": 1, "LOAD": 1}


def test_a_run_waiting_for_a_loader_can_be_cancelled_and_its_loader_then_does_nothing(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("CANCELLED", *PHASES)
    bench.add(process)
    execution_id = bench.record("CANCELLED")
    bench.runner("runner").run(execution_id)
    [(_, ticket, _)] = loader.sent
    revoked: list[str] = []

    cancelled = cancel_execution(bench.store, execution_id, user="bob", revoke=revoked.append)
    assert (cancelled["status"], cancelled["message"]) == ("failed", "Cancelled by bob")
    assert revoked == [execution_id]
    assert bench.runner("loader").run(execution_id, ticket) is None
    assert bench.status(execution_id) == "failed"
    assert "LOAD" not in calls


def test_a_batch_no_loader_took_is_sent_to_the_loader_queue_again_not_counted_as_lost(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("UNTAKEN", *PHASES, max_recoveries=1)
    bench.add(process)
    execution_id = bench.record("UNTAKEN")
    bench.runner("runner").run(execution_id)
    [(_, ticket, _)] = loader.sent

    for times in range(1, 4):  # more often than the process may be recovered: none counted
        report = bench.housekeeper.run_once(later((LOST_TIMEOUT + 1) * times))
        assert report.handed_again == [execution_id]
        assert (report.resumed, report.failed) == ([], [])
    assert loader.sent == [(execution_id, ticket, "UNTAKEN")] * 4
    assert bench.status(execution_id) == "running"
    assert bench.store.get_meta(execution_id).get("recoveries") in (None, 0)
    assert bench.runner("loader").run(execution_id, ticket) == "success"
    assert calls == {"EXTRACT": 1, "TRANSFORM": 1, "SEND": 1, "LOAD": 1}


def test_a_hand_over_the_broker_refused_is_sent_again_once_it_is_back(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("REFUSED", *PHASES)
    bench.add(process)
    execution_id = bench.record("REFUSED")
    loader.down = True
    assert bench.runner("runner").run(execution_id) == "running"
    assert loader.sent == []
    loader.down = False
    assert bench.housekeeper.run_once(past_lost_timeout()).handed_again == [execution_id]
    [(_, ticket, _)] = loader.sent
    assert bench.runner("loader").run(execution_id, ticket) == "success"
    assert calls == {"EXTRACT": 1, "TRANSFORM": 1, "SEND": 1, "LOAD": 1}


def test_without_a_loader_queue_any_more_a_waiting_batch_goes_back_to_the_run_queue(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("RECONFIGURED", *PHASES)
    bench.add(process)
    execution_id = bench.record("RECONFIGURED")
    bench.runner("runner").run(execution_id)
    bench.triggers.hand_off = None  # the service restarted with PROCEXEC_LOADER_QUEUE empty

    report = bench.housekeeper.run_once(past_lost_timeout())
    assert report.redispatched == [execution_id]
    assert bench.status(execution_id) == "triggered"
    assert bench.broker.ids == [execution_id]
    assert bench.runner("runner-2").run(execution_id) == "success"
    assert calls == {"EXTRACT": 1, "TRANSFORM": 1, "SEND": 1, "LOAD": 1}


def test_a_loader_lost_mid_load_is_resumed_and_its_load_handed_over_again(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, calls = steps("LOADER_DIES", *PHASES[:3])
    started, release = [], threading.Event()

    @process.phase("LOAD")
    def load(ctx: PhaseContext, previous: Any) -> Any:
        started.append(ctx.attempt)
        if len(started) == 1:  # the first loader hangs without heartbeats: "dead"
            release.wait(DEADLINE)
        return [*previous, "LOAD"]

    bench.add(process)
    execution_id = bench.record("LOADER_DIES")
    bench.runner("runner").run(execution_id)
    [(_, ticket, _)] = loader.sent
    dead = bench.runner("loader-1", heartbeat_interval=NO_HEARTBEAT)
    hung = Background(bench.store, lambda: dead.run(execution_id, ticket), "dead loader")
    wait_for(lambda: started, "the first loader to start LOAD")

    report = bench.housekeeper.run_once(past_lost_timeout())
    assert report.resumed == [execution_id]
    assert bench.broker.ids == [execution_id]  # back to the run queue, from its checkpoint
    assert bench.runner("runner-2").run(execution_id) == "running"
    assert len(loader.sent) == 2
    _, second_ticket, _ = loader.sent[1]
    assert second_ticket != ticket
    assert bench.runner("loader-2").run(execution_id, second_ticket) == "success"
    assert calls == {"EXTRACT": 1, "TRANSFORM": 1, "SEND": 1}  # not run again
    assert bench.status(execution_id) == "success"
    release.set()
    hung.join()  # the dead loader wakes up fenced off: it writes nothing
    assert bench.status(execution_id) == "success"
    assert len(started) == 2


def test_a_result_that_cannot_be_kept_is_loaded_where_send_ran(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, _ = steps("UNPICKLABLE", "EXTRACT")

    @process.phase("SEND")
    def send(ctx: PhaseContext, previous: Any) -> Any:
        return lambda: previous  # a function cannot be pickled

    @process.phase("LOAD")
    def load(ctx: PhaseContext, previous: Any) -> Any:
        return previous()

    bench.add(process)
    execution_id = bench.record("UNPICKLABLE")
    assert bench.runner("runner").run(execution_id) == "success"
    assert loader.sent == []
    log = texts(bench.phase(execution_id, "LOAD")["log"])
    assert log[0].startswith("warning LOAD runs on runner, not on the loader queue")


def test_a_process_without_load_is_not_handed_over(bench: Bench, loader: LoaderQueue) -> None:
    process, calls = steps("NO_LOAD", "EXTRACT", "SEND")
    bench.add(process)
    execution_id = bench.record("NO_LOAD")
    assert bench.runner().run(execution_id) == "success"
    assert loader.sent == []
    assert calls == {"EXTRACT": 1, "SEND": 1}


def test_a_checkpoint_of_the_earlier_form_still_resumes(bench: Bench) -> None:
    """A run checkpointed by an earlier version (its result alone) and then lost resumes."""
    process = Process("LEGACY")
    seen: list[Any] = []
    release = threading.Event()

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> list[str]:
        return ["extracted"]

    @process.phase("TRANSFORM")
    def transform(ctx: PhaseContext, previous: Any) -> Any:
        seen.append(previous)
        if len(seen) == 1:  # the first worker hangs without heartbeats: "dead"
            release.wait(DEADLINE)
        return previous

    bench.add(process)
    execution_id = bench.record("LEGACY")
    dead = bench.runner("w1", heartbeat_interval=NO_HEARTBEAT)
    hung = Background(bench.store, lambda: dead.run(execution_id), "dead worker")
    wait_for(lambda: seen, "the first worker to reach TRANSFORM")
    # EXTRACT's end and checkpoint written (by the recording thread), then overwritten
    wait_for(lambda: bench.store.load_checkpoint(execution_id, 0), "EXTRACT's checkpoint")
    bench.store.save_checkpoint(execution_id, 0, pickle.dumps(["as kept before"]))

    assert bench.housekeeper.run_once(past_lost_timeout()).resumed == [execution_id]
    assert bench.runner("w2").run(execution_id) == "success"
    assert seen == [["extracted"], ["as kept before"]]
    release.set()
    hung.join()


def test_a_worker_that_consumes_the_loader_queue_loads_the_batch_itself(
    bench: Bench, loader: LoaderQueue
) -> None:
    process, ran = reporting("SELF")
    bench.registry.add(process)
    execution_id = bench.record("SELF")

    assert bench.runner("both", loads_here=True).run(execution_id) == "warning"
    assert loader.sent == []  # no hand-over to itself: no message, no ticket
    assert ran == {name: ["both"] for name in PHASES}
    final = bench.doc(execution_id)
    assert [(p["name"], p["status"]) for p in final["phases"]] == [
        (name, "success") for name in PHASES
    ]
    assert final["loaderMessage"] == "Loaded 3 rows"
    assert final["data"]["series"] == {"2026-12-01": ["S1", "S2", "S3"]}
    assert not any(
        WAITING_FOR_LOADER in str(change) for _, change in bench.store.changes(execution_id)
    )
