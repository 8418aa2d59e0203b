"""Concurrency limits in-process (`engine.concurrency`, the bench: tests/engine/runs.py): never
more runs at once than the limit, read from the documents; waiting runs start in trigger order;
a killed holder frees its slot after the lost-run timeout; a waiting run is never sent again as
undelivered; limits per value of a parameter, the operators' and the one over every run.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from procexec.engine.concurrency import Limits, change_limit
from procexec.engine.context import PhaseContext
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.process import Process
from procexec.engine.runner import PhaseRunner
from procexec.engine.scheduler import describe, effective
from procexec.engine.trigger_service import TriggerService
from tests.engine.runs import (
    DEADLINE,
    ENV,
    FLUSH,
    LOST_TIMEOUT,
    NO_HEARTBEAT,
    Background,
    Bench,
    later,
    past_lost_timeout,
    wait_for,
)


@pytest.fixture
def bench(any_bench: Bench) -> Bench:
    """This module's bench on each store in turn: SQLite, then MongoDB or mongomock."""
    return any_bench


#: the most runs of each process seen inside its phase at once
MOST: dict[str, int] = {}


def limited(name: str, gate: threading.Event | None = None, **options: Any) -> Process:
    """A process of one phase that waits for `gate` (when given) and counts the runs in it."""
    process = Process(name, **options)
    inside = [0]
    MOST[name] = 0
    lock = threading.Lock()

    @process.phase("WORK")
    def work(ctx: PhaseContext, previous: Any) -> None:
        with lock:
            inside[0] += 1
            MOST[name] = max(MOST[name], inside[0])
        try:
            if gate is not None:
                assert gate.wait(DEADLINE)
            ctx.sleep(0.01)
        finally:
            with lock:
                inside[0] -= 1

    return process


def running_interval(doc: dict[str, Any]) -> tuple[str, str]:
    """When a run ran: its first phase's start (its claim), its end."""
    return doc["phases"][0]["start"], doc["end"]


class Workers:
    """Runner threads taking run ids from one queue, as Celery workers take task messages."""

    def __init__(self, bench: Bench, count: int, **options: Any) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.triggers = TriggerService(
            bench.store, bench.registry, lambda execution_id, *_: self.queue.put(execution_id)
        )
        self.threads = [
            Background(bench.store, self._loop(bench, f"w{n}", **options), f"worker-{n}")
            for n in range(count)
        ]

    def _loop(self, bench: Bench, worker_id: str, **options: Any) -> Any:
        runner = PhaseRunner(
            bench.store, bench.registry, worker_id=worker_id, triggers=self.triggers,
            flush_interval=FLUSH, **options,
        )  # fmt: skip

        def loop() -> None:
            while (execution_id := self.queue.get(timeout=DEADLINE)) is not None:
                runner.run(execution_id)

        return loop

    def trigger(self, name: str, body: dict[str, Any] | None = None) -> str:
        doc = self.triggers.trigger(name, run_as="alice", environment=ENV, body=body)
        return str(doc["_id"])

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()


def test_max_running_1_runs_one_at_a_time_in_trigger_order(bench: Bench) -> None:
    gate = threading.Event()
    bench.add(limited("ONE", gate, max_running=1))
    workers = Workers(bench, 3)
    try:
        ids = []
        for _ in range(20):  # a millisecond apart: runs triggered within one go by their id
            ids.append(workers.trigger("ONE"))
            time.sleep(0.002)
        wait_for(lambda: bench.store.waiting_scopes() == {"ONE": 19}, "19 runs waiting")
        waiting = [bench.doc(execution_id) for execution_id in ids]
        assert sum(doc["status"] == "running" for doc in waiting) == 1
        for doc in waiting:
            if doc["status"] == "triggered":
                assert doc["message"] == "Waiting for a slot: ONE has 1 running (max_running 1)"
        gate.set()
        wait_for(
            lambda: all(bench.status(execution_id) == "success" for execution_id in ids),
            "all 20 runs to end",
        )
    finally:
        gate.set()
        workers.stop()
    docs = [bench.doc(execution_id) for execution_id in ids]
    intervals = sorted(running_interval(doc) for doc in docs)
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, "two runs at once"
    assert MOST["ONE"] == 1
    # the first one claimed (of those the workers took at once), then the waiting ones in
    # trigger order
    ran = sorted(ids, key=lambda execution_id: running_interval(bench.doc(execution_id)))
    assert ran[1:] == [execution_id for execution_id in ids if execution_id != ran[0]]
    assert bench.store.slot_holders() == []


def test_max_running_2_never_runs_3(bench: Bench) -> None:
    bench.add(limited("TWO", max_running=2))
    workers = Workers(bench, 4)
    try:
        ids = [workers.trigger("TWO") for _ in range(16)]
        wait_for(
            lambda: all(bench.status(execution_id) == "success" for execution_id in ids),
            "all 16 runs to end",
        )
    finally:
        workers.stop()
    assert 1 <= MOST["TWO"] <= 2
    edges = sorted(
        (moment, step)
        for doc in map(bench.doc, ids)
        for moment, step in zip(running_interval(doc), (1, -1), strict=True)
    )
    at_once = 0
    for _, step in edges:  # an end and a start at the same millisecond: the end first
        at_once += step
        assert at_once <= 2


def hang_holder(bench: Bench, execution_id: str) -> Background:
    """Run `execution_id` on a worker that hangs in its phase, sending no heartbeat: dead."""
    dead = Background(
        bench.store,
        lambda: bench.runner("dead", heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "dead-worker",
    )
    wait_for(lambda: bench.status(execution_id) == "running", "the holder running")
    return dead


@pytest.mark.parametrize("on_lost", ["fail", "resume"])
def test_a_killed_holder_frees_its_slot_after_the_lost_run_timeout(
    bench: Bench, on_lost: str
) -> None:
    gate = threading.Event()
    bench.add(limited("SOLO", gate, max_running=1, on_lost=on_lost))
    holder, waiter = bench.record("SOLO"), bench.record("SOLO")
    dead = hang_holder(bench, holder)
    try:
        assert bench.runner("w2").run(waiter) == "triggered"
        assert bench.doc(waiter)["message"] == (
            "Waiting for a slot: SOLO has 1 running (max_running 1)"
        )
        # within the timeout nothing moves, and the waiting run is not sent as undelivered
        report = bench.housekeeper.run_once(later(LOST_TIMEOUT - 1))
        assert (report.redispatched, report.woken, bench.broker.ids) == ([], [], [])

        report = bench.housekeeper.run_once(past_lost_timeout())
        gate.set()
        if on_lost == "fail":
            assert report.failed == [holder] and report.woken == [waiter]
            assert bench.broker.ids == [waiter]
        else:  # resumed: it keeps its slot, runs again, then hands it on
            assert report.resumed == [holder] and report.woken == []
            assert bench.runner("w3").run(waiter) == "triggered"  # still waiting
            assert bench.runner("w3").run(holder) == "success"
            # sent by whichever worker gives the slot back: w3, or the dead one, whose phase
            # ends once the gate opens and which finds the run ended when it stops
            wait_for(lambda: bench.broker.ids == [holder, waiter], "the waiting run sent")
        assert bench.runner("w3").run(waiter) == "success"
    finally:
        gate.set()
    dead.join()
    assert bench.store.slot_holders() == []


def test_a_waiting_run_is_never_sent_again_as_undelivered(bench: Bench) -> None:
    gate = threading.Event()
    bench.add(limited("SOLO", gate, max_running=1))
    holder, waiter = bench.record("SOLO"), bench.record("SOLO")
    keeper = Housekeeper(
        bench.store, bench.registry, bench.triggers, lost_timeout=3600, redispatch_after=1
    )
    run = Background(bench.store, lambda: bench.runner("w1").run(holder), "holder")
    try:
        wait_for(lambda: bench.status(holder) == "running", "the holder running")
        assert bench.runner("w2").run(waiter) == "triggered"
        for seconds in (2, 60, 3000):
            report = keeper.run_once(later(seconds))
            assert (report.redispatched, report.woken) == ([], []), seconds
        assert bench.broker.ids == []
    finally:
        gate.set()
    assert run.join() == "success"
    assert bench.broker.ids == [waiter]  # sent by the holder as it ended
    assert bench.runner("w2").run(waiter) == "success"


def test_a_limit_per_key_holds_per_value(bench: Bench) -> None:
    gate = threading.Event()
    bench.add(
        limited("DATED", gate, defaults={"date": "2024-01-01"}, max_running=1, limit_key="date")
    )
    first = bench.record("DATED", {"date": "2024-01-01"})
    same = bench.record("DATED", {"date": "2024-01-01"})
    other = bench.record("DATED", {"date": "2024-01-02"})
    run = Background(bench.store, lambda: bench.runner("w1").run(first), "first")
    try:
        wait_for(lambda: bench.status(first) == "running", "the first running")
        assert bench.runner("w2").run(same) == "triggered"
        assert bench.doc(same)["message"] == (
            'Waiting for a slot: DATED has 1 running for date="2024-01-01" (max_running 1)'
        )
        gate_other = Background(bench.store, lambda: bench.runner("w3").run(other), "other")
        wait_for(lambda: bench.status(other) == "running", "another date running at once")
    finally:
        gate.set()
    assert run.join() == "success" and gate_other.join() == "success"
    assert bench.broker.ids == [same]
    assert bench.runner("w2").run(same) == "success"


def test_a_limit_per_secret_key_waits_without_showing_it(bench: Bench) -> None:
    class Keyed(BaseModel):
        api_key: SecretStr = SecretStr("default-key")

    gate = threading.Event()
    bench.add(limited("KEYED", gate, params=Keyed, max_running=1, limit_key="api_key"))
    first = bench.record("KEYED", {"api_key": "tenant-s3cr3t"})
    same = bench.record("KEYED", {"api_key": "tenant-s3cr3t"})
    other = bench.record("KEYED", {"api_key": "other-s3cr3t"})
    run = Background(bench.store, lambda: bench.runner("w1").run(first), "first")
    try:
        wait_for(lambda: bench.status(first) == "running", "the first running")
        assert bench.runner("w2").run(same) == "triggered"
        assert bench.doc(same)["message"] == (
            'Waiting for a slot: KEYED has 1 running for api_key="**********" (max_running 1)'
        )
        gate_other = Background(bench.store, lambda: bench.runner("w3").run(other), "other")
        wait_for(lambda: bench.status(other) == "running", "another key running at once")
    finally:
        gate.set()
    assert run.join() == "success" and gate_other.join() == "success"
    assert bench.runner("w2").run(same) == "success"


def test_the_operators_limit_set_then_cleared(bench: Bench) -> None:
    gate = threading.Event()
    bench.add(limited("FREE", gate))
    assert change_limit(bench.store, bench.registry, "FREE", 1, who="cli:test") == 1
    [action] = bench.store.actions(action="limit")
    assert (action.target, action.details) == ("FREE", {"limit": 1})
    first, second = bench.record("FREE"), bench.record("FREE")
    run = Background(bench.store, lambda: bench.runner("w1").run(first), "first")
    try:
        wait_for(lambda: bench.status(first) == "running", "the first running")
        assert bench.runner("w2").run(second) == "triggered"
        # cleared: the housekeeping sends the waiting run, which runs beside the first
        assert change_limit(bench.store, bench.registry, "FREE", 0, who="cli:test") is None
        assert bench.housekeeper.run_once().woken == [second]
        second_run = Background(bench.store, lambda: bench.runner("w2").run(second), "second")
        wait_for(lambda: bench.status(second) == "running", "the second running at once")
    finally:
        gate.set()
    assert run.join() == "success" and second_run.join() == "success"
    bench.housekeeper.run_once()
    assert bench.store.slot_holders() == []


def test_the_limit_over_every_run(bench: Bench) -> None:
    gate = threading.Event()
    bench.add(limited("FREE", gate))
    everything = Limits(bench.store, bench.registry, bench.triggers, max_running=1)
    first, demo = bench.record("FREE"), bench.record("DEMO")
    run = Background(bench.store, lambda: bench.runner("w1", limits=everything).run(first), "1")
    try:
        wait_for(lambda: bench.status(first) == "running", "the first running")
        assert bench.runner("w2", limits=everything).run(demo) == "triggered"
        assert bench.doc(demo)["message"] == (
            "Waiting for a slot: 1 runs running in all (PROCEXEC_MAX_RUNNING 1)"
        )
    finally:
        gate.set()
    assert run.join() == "success"
    assert bench.broker.ids == [demo]
    assert bench.runner("w2", limits=everything).run(demo) == "success"


def test_the_process_list_shows_the_limit(bench: Bench) -> None:
    process = bench.add(limited("DATED", defaults={"date": "x"}, max_running=2, limit_key="date"))
    item = describe(effective(process, None))
    assert (item["maxRunning"], item["limitKey"]) == (2, "date")
    change_limit(bench.store, bench.registry, "DATED", 0, who="cli:test")
    item = describe(effective(process, bench.store.process_states()["DATED"]))
    assert (item["maxRunning"], item["limitKey"]) == (None, "date")
    change_limit(bench.store, bench.registry, "DATED", None, who="cli:test")
    assert describe(effective(process, bench.store.process_states()["DATED"]))["maxRunning"] == 2


def test_a_limit_is_checked_at_definition() -> None:
    with pytest.raises(ValueError, match="max_running must be a whole number, 1 or more"):
        Process("BAD", max_running=0)
    with pytest.raises(ValueError, match="limit_key 'day' is none of its parameters"):
        Process("BAD", defaults={"date": "x"}, max_running=1, limit_key="day")


def test_a_run_no_limit_concerns_takes_no_slot(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any) -> None:
        raise AssertionError("a slot taken or given back without a limit")

    monkeypatch.setattr(bench.store, "take_slots", refused)
    monkeypatch.setattr(bench.store, "release_slots", refused)
    assert bench.runner().run(bench.record("DEMO")) == "success"
