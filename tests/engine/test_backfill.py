"""Backfill on real stores (SQLite files; MongoDB or mongomock): the runs a schedule would have
made over a past range, exactly as the beat makes them, never twice whoever makes them first."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from procexec.engine.backfill import MAX_FIRES, SEND_PAUSE, Backfill, BackfillService
from procexec.engine.crontab import crontab_reason
from procexec.engine.errors import BadRequest, Conflict, NotFound
from procexec.engine.process import ProcessRegistry
from procexec.engine.scheduler import SchedulerService, change_process, scheduled_execution_id
from procexec.engine.store.base import ExecutionStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService
from tests.engine.test_scheduler import (
    Dispatched,
    another_connection,
    at,
    executions,
    process,
)

DAY_START, DAY_END = "2021-07-01T00:00:00Z", "2021-07-02T00:00:00Z"
#: when the tests' backfills run: after the day they fill
NOW = at(12, 0, day=3)
HOURS = [at(hour, 0) for hour in range(24)]
WHO = "cli:operator"


class Filler:
    """A backfill service on its own store connection, with its own dispatch recorder."""

    def __init__(self, store: ExecutionStore, registry: ProcessRegistry, **options: Any) -> None:
        self.store = store
        self.dispatched = Dispatched()
        triggers = TriggerService(store, registry, self.dispatched)
        self.service = BackfillService(store, registry, triggers, pause=0, **options)

    def run(
        self, name: str = "HOURLY", start: Any = DAY_START, end: Any = DAY_END, **kw: Any
    ) -> Backfill:
        return self.service.backfill(name, start, end, who=WHO, now=NOW, **kw)


@pytest.fixture
def registry() -> ProcessRegistry:
    found = ProcessRegistry()
    found.add(process("HOURLY", "0 * * * *"))
    found.add(process("STAMPED", "0 * * * *", defaults={"fire_time": None, "size": 1}))
    found.add(process("MINUTELY", "* * * * *"))
    found.add(process("UNSCHEDULED", None))
    return found


@pytest.fixture
def filler(store: ExecutionStore, registry: ProcessRegistry) -> Filler:
    return Filler(store, registry)


def test_a_day_of_an_hourly_schedule_makes_24_runs_with_the_beats_reasons_and_ids(
    filler: Filler, store: ExecutionStore
) -> None:
    done = filler.run()
    assert [run.state for run in done.runs] == ["made"] * 24
    assert [run.fire for run in done.runs] == HOURS
    docs = {doc["_id"]: doc for doc in executions(store, "HOURLY")}
    assert len(docs) == 24
    for fire in HOURS:
        doc = docs[scheduled_execution_id("production", "HOURLY", fire)]
        assert doc["trigger"] == "scheduled"
        assert doc["reason"] == crontab_reason("HOURLY", fire)
        assert doc["runAs"] == "scheduler"
        assert doc["environment"] == "production"
        assert store.get_meta(doc["_id"])["input"] == {}
    assert sorted(filler.dispatched.ids) == sorted(docs)
    # run again: none made, each there already, none dispatched
    again = filler.run()
    assert [run.state for run in again.runs] == ["existed"] * 24
    assert (again.count("made"), again.count("existed")) == (0, 24)
    assert len(executions(store, "HOURLY")) == 24
    assert len(filler.dispatched.ids) == 24
    # the audit trail: one entry per backfill, not per run
    trail = store.actions(action="backfill")
    assert [(a.who, a.target) for a in trail] == [(WHO, "HOURLY")] * 2
    assert trail[0].details == {
        "from": "2021-07-01T00:00:00.000Z",
        "to": "2021-07-02T00:00:00.000Z",
        "made": 0,
        "existed": 24,
        "refused": 0,
    }
    assert trail[1].details["made"] == 24


def test_the_beat_and_a_backfill_make_the_same_run_whoever_is_first(
    filler: Filler, store: ExecutionStore, registry: ProcessRegistry
) -> None:
    """The beat fires 10:00 and 11:00 (its grace covers both); the backfill of the day then
    makes the 22 others."""
    triggers = TriggerService(store, registry, Dispatched())
    beat = SchedulerService(store, registry, triggers, grace=timedelta(days=5))
    store.advance_schedule("STAMPED", iso_ms(at(9, 30)))
    assert len(beat.tick(at(11, 0, 30)).triggered) == 2
    by_beat = {doc["_id"]: doc for doc in executions(store, "STAMPED")}
    done = filler.run("STAMPED")
    assert done.count("existed") == 2 and done.count("made") == 22
    assert {run.id for run in done.runs if run.state == "existed"} == set(by_beat)
    docs = executions(store, "STAMPED")
    assert len(docs) == 24
    # the same document and parameters from either
    for doc in docs:
        fire = next(run.fire for run in done.runs if run.id == doc["_id"])
        assert (doc["trigger"], doc["reason"], doc["runAs"]) == (
            "scheduled",
            crontab_reason("STAMPED", fire),
            "scheduler",
        )
        assert store.get_meta(doc["_id"])["input"] == {"fire_time": iso_ms(fire), "size": 1}


def test_a_beat_after_a_backfill_makes_none_of_its_runs(
    filler: Filler, store: ExecutionStore, registry: ProcessRegistry
) -> None:
    filler.run()
    dispatched = Dispatched()
    beat = SchedulerService(
        store, registry, TriggerService(store, registry, dispatched), grace=timedelta(days=5)
    )
    store.advance_schedule("HOURLY", iso_ms(at(0, 0) - timedelta(minutes=1)))
    assert beat.tick(at(23, 59)).triggered == []
    assert dispatched.ids == []
    assert len(executions(store, "HOURLY")) == 24


def test_a_second_beat_running_during_a_backfill_adds_no_duplicate(
    store: ExecutionStore, registry: ProcessRegistry
) -> None:
    """A beat (its own connection, a grace wide enough to fire the whole day) ticks while a
    backfill of the same day runs: 24 runs, each dispatched once, by one of them."""
    store.advance_schedule("HOURLY", iso_ms(at(0, 0) - timedelta(minutes=1)))
    beat_store = another_connection(store)
    beat_dispatched = Dispatched()
    beat = SchedulerService(
        beat_store,
        registry,
        TriggerService(beat_store, registry, beat_dispatched),
        grace=timedelta(days=5),
    )
    filler = Filler(another_connection(store), registry)
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def backfill() -> None:
        start.wait()
        results["backfill"] = filler.run()

    def tick() -> None:
        start.wait()
        results["beat"] = beat.tick(at(23, 30, day=1))

    threads = [threading.Thread(target=backfill), threading.Thread(target=tick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = filler.dispatched.ids + beat_dispatched.ids
    assert len(ids) == len(set(ids)) == 24
    assert len(executions(store, "HOURLY")) == 24
    assert results["backfill"].count("made") == len(filler.dispatched.ids)
    assert results["backfill"].count("made") + results["backfill"].count("existed") == 24
    assert sorted(results["beat"].triggered) == sorted(beat_dispatched.ids)


def test_fire_time_is_given_only_where_the_process_declares_it(
    filler: Filler, store: ExecutionStore
) -> None:
    filler.run("STAMPED", "2021-07-01T05:00:00Z", "2021-07-01T06:00:00Z")
    filler.run("HOURLY", "2021-07-01T05:00:00Z", "2021-07-01T06:00:00Z")
    stamped = scheduled_execution_id("production", "STAMPED", at(5, 0))
    plain = scheduled_execution_id("production", "HOURLY", at(5, 0))
    assert store.get_meta(stamped)["input"] == {"fire_time": "2021-07-01T05:00:00.000Z", "size": 1}
    assert store.get_meta(plain)["input"] == {}


def test_the_beat_gives_fire_time_where_declared(
    store: ExecutionStore, registry: ProcessRegistry
) -> None:
    beat = SchedulerService(store, registry, TriggerService(store, registry, Dispatched()))
    for name in ("STAMPED", "HOURLY"):
        store.advance_schedule(name, iso_ms(at(4, 59)))
    assert len(beat.tick(at(5, 0, 10)).triggered) == 2  # MINUTELY: its first tick starts it
    stamped = scheduled_execution_id("production", "STAMPED", at(5, 0))
    plain = scheduled_execution_id("production", "HOURLY", at(5, 0))
    assert store.get_meta(stamped)["input"] == {"fire_time": "2021-07-01T05:00:00.000Z", "size": 1}
    assert store.get_meta(plain)["input"] == {}


def test_a_dry_run_lists_the_fire_times_and_which_exist_and_makes_nothing(
    filler: Filler, store: ExecutionStore
) -> None:
    filler.run(start="2021-07-01T10:00:00Z", end="2021-07-01T12:00:00Z")
    actions = len(store.actions())
    dry = filler.run(dry_run=True)
    assert dry.dry_run
    assert [run.fire for run in dry.runs] == HOURS
    states = {run.fire.hour: run.state for run in dry.runs}
    assert states[10] == states[11] == "existed"
    assert [hour for hour, state in states.items() if state == "new"] == [
        hour for hour in range(24) if hour not in (10, 11)
    ]
    assert dry.describe()["new"] == 22
    assert len(executions(store, "HOURLY")) == 2
    assert len(store.actions()) == actions


def test_from_is_included_to_is_not_and_naive_times_are_utc(filler: Filler) -> None:
    done = filler.run(start="2021-07-01T03:00", end="2021-07-01T06:00")
    assert [run.fire for run in done.runs] == [at(3, 0), at(4, 0), at(5, 0)]
    offset = filler.run(start="2021-07-01T09:00+02:00", end="2021-07-01T08:00:00.001+01:00")
    assert [run.fire for run in offset.runs] == [at(7, 0)]


def test_the_operators_schedule_is_the_one_filled(
    filler: Filler, store: ExecutionStore, registry: ProcessRegistry
) -> None:
    change_process(store, registry, "HOURLY", schedule="0 */6 * * *", who="root")
    done = filler.run()
    assert [run.fire for run in done.runs] == [at(0, 0), at(6, 0), at(12, 0), at(18, 0)]


def test_a_disabled_process_may_be_backfilled(
    filler: Filler, store: ExecutionStore, registry: ProcessRegistry
) -> None:
    change_process(store, registry, "HOURLY", enabled=False, who="root")
    assert filler.run().count("made") == 24


@pytest.mark.parametrize(
    ("name", "start", "end", "error", "message"),
    [
        ("NOPE", DAY_START, DAY_END, NotFound, "unknown process 'NOPE'"),
        (
            "UNSCHEDULED",
            DAY_START,
            DAY_END,
            Conflict,
            "process UNSCHEDULED has no schedule: nothing to backfill",
        ),
        (
            "HOURLY",
            "yesterday",
            DAY_END,
            BadRequest,
            "from: 'yesterday' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z",
        ),
        (
            "HOURLY",
            DAY_END,
            DAY_END,
            BadRequest,
            "to: 2021-07-02T00:00:00.000Z must be after from (2021-07-02T00:00:00.000Z)",
        ),
        (
            "HOURLY",
            DAY_START,
            "2021-07-04T00:00:00Z",
            BadRequest,
            "to: 2021-07-04T00:00:00.000Z is in the future: a backfill makes the runs of past "
            "fire times (the beat makes the others)",
        ),
        (
            "MINUTELY",
            DAY_START,
            DAY_END,
            BadRequest,
            f"from, to: MINUTELY's schedule fires more than {MAX_FIRES} times from "
            "2021-07-01T00:00:00.000Z to 2021-07-02T00:00:00.000Z; a backfill makes at most "
            f"{MAX_FIRES} runs: split the range",
        ),
    ],
)
def test_what_a_backfill_refuses_it_refuses_whole(
    filler: Filler,
    store: ExecutionStore,
    name: str,
    start: str,
    end: str,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as raised:
        filler.run(name, start, end)
    assert str(raised.value) == message
    assert executions(store) == []
    assert store.actions() == []


def test_the_most_fire_times_are_allowed(filler: Filler, store: ExecutionStore) -> None:
    end = at(0, 0) + timedelta(minutes=MAX_FIRES)
    assert len(filler.run("MINUTELY", DAY_START, end, dry_run=True).runs) == MAX_FIRES


def test_runs_are_sent_a_pause_apart(store: ExecutionStore, registry: ProcessRegistry) -> None:
    pauses: list[float] = []
    service = BackfillService(
        store, registry, TriggerService(store, registry, Dispatched()), sleep=pauses.append
    )
    service.backfill("HOURLY", "2021-07-01T00:00Z", "2021-07-01T05:00Z", who=WHO, now=NOW)
    assert pauses == [SEND_PAUSE] * 4


def test_a_run_its_process_refuses_is_told_and_the_others_made(
    store: ExecutionStore,
) -> None:
    def check(params: dict[str, Any]) -> None:
        if params["fire_time"] and params["fire_time"].startswith("2021-07-01T03"):
            raise ValueError("not at three")

    registry = ProcessRegistry(
        [process("CHECKED", "0 * * * *", defaults={"fire_time": None}, check=check)]
    )
    filler = Filler(store, registry)
    done = filler.run("CHECKED", "2021-07-01T02:00Z", "2021-07-01T05:00Z")
    assert [(run.fire.hour, run.state) for run in done.runs] == [
        (2, "made"),
        (3, "refused"),
        (4, "made"),
    ]
    assert done.runs[1].message == "body: not at three"
    assert store.actions(action="backfill")[0].details["refused"] == 1


def test_instants_are_taken_as_well_as_texts(filler: Filler) -> None:
    start = datetime(2021, 7, 1, 2, tzinfo=UTC)
    assert [run.fire for run in filler.run(start=start, end=start + timedelta(hours=2)).runs] == [
        at(2, 0),
        at(3, 0),
    ]
