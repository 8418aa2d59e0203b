"""SchedulerService with fixed clocks on real stores (SQLite files; MongoDB or mongomock).

Each test gives `tick` the instant it runs at, and replaces only the broker by a recorder of
what would be dispatched. "Two beats" are two SchedulerService instances with their own store
connections to the same store.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.crontab import crontab_reason
from procexec.engine.domain import Trigger
from procexec.engine.errors import BadRequest, NotFound
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.scheduler import (
    SchedulerService,
    change_process,
    describe,
    effective,
    scheduled_execution_id,
)
from procexec.engine.store.base import ExecutionStore, ProcessState
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService

SCHEDULER_LOG = "procexec.engine.scheduler"


def at(hour: int, minute: int, second: float = 0, day: int = 1, month: int = 7) -> datetime:
    """An instant on a fixed day (2021-07-01 by default), UTC."""
    whole = int(second)
    return datetime(2021, month, day, hour, minute, whole, int((second - whole) * 1e6), tzinfo=UTC)


def _noop(ctx: Any, previous: Any) -> None:
    return None


def process(name: str, schedule: str | None, **options: Any) -> Process:
    definition = Process(name, schedule=schedule, **options)
    definition.phase("EXTRACT")(_noop)
    return definition


class Dispatched:
    """The broker's stand-in: records every `(execution_id, delay)`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def __call__(self, execution_id: str, delay: float, process: str | None = None) -> None:
        with self._lock:
            self.calls.append((execution_id, delay))

    @property
    def ids(self) -> list[str]:
        return [execution_id for execution_id, _ in self.calls]


def another_connection(store: ExecutionStore) -> ExecutionStore:
    """A second, separate connection to the same store, as a second beat would open."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, MongoStore)
    # mongomock keeps its data in the client object: share it (a real server needs no sharing)
    return MongoStore(f"mongodb://localhost/{store.db.name}", client=store.client)


class Beat:
    """One scheduler with its own store connection and its own dispatch recorder."""

    def __init__(self, store: ExecutionStore, registry: ProcessRegistry) -> None:
        self.store = store
        self.dispatched = Dispatched()
        self.service = SchedulerService(
            store, registry, TriggerService(store, registry, self.dispatched)
        )

    def tick(self, now: datetime) -> Any:
        return self.service.tick(now)


@pytest.fixture
def registry() -> ProcessRegistry:
    return ProcessRegistry()


@pytest.fixture
def beat(store: ExecutionStore, registry: ProcessRegistry) -> Beat:
    return Beat(store, registry)


def executions(store: ExecutionStore, name: str | None = None) -> list[dict[str, Any]]:
    """Every execution (of `name`), in the production environment."""
    params = [("_limit", "-1")]
    if name is not None:
        params.append(("name", name))
    docs, _ = store.list(parse_query(params))
    return docs


def reasons(store: ExecutionStore, name: str) -> list[str]:
    return sorted(doc["reason"] for doc in executions(store, name))


def state(store: ExecutionStore, name: str) -> ProcessState:
    return store.process_states()[name]


def fired_at(name: str, *fires: datetime) -> list[str]:
    return sorted(crontab_reason(name, fire) for fire in fires)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == SCHEDULER_LOG and record.levelno == logging.WARNING
    ]


# --- the first tick and one fire -----------------------------------------------------------


def test_first_tick_initialises_without_backfill(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("MINUTELY", "* * * * *"))
    result = beat.tick(at(12, 3, 30))
    assert (result.triggered, result.skipped) == ([], {})
    assert executions(store) == []
    assert beat.dispatched.calls == []
    assert state(store, "MINUTELY").last_fire == "2021-07-01T12:03:30.000Z"
    assert state(store, "MINUTELY").missed == 0
    listed = describe(effective(registry.get("MINUTELY"), state(store, "MINUTELY")))
    assert listed["nextFire"] == "2021-07-01T12:04:00.000Z"
    # a second tick within the same minute: nothing
    assert beat.tick(at(12, 3, 59)).triggered == []
    assert executions(store) == []


def test_a_fire_at_the_minute_triggers_exactly_one_scheduled_execution(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("ECB_FX", "30 16 * * 1-5", defaults={"url": None}))
    beat.tick(at(16, 29, 50))
    result = beat.tick(at(16, 30, 0.2))
    expected_id = scheduled_execution_id("production", "ECB_FX", at(16, 30))
    assert result.triggered == [expected_id]
    assert beat.dispatched.calls == [(expected_id, 0.0)]
    doc = store.get(expected_id)
    assert doc is not None
    assert doc["name"] == "ECB_FX"
    assert doc["trigger"] == Trigger.SCHEDULED.value == "scheduled"
    assert doc["reason"] == (
        "crontab(ECB_FX,Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time))"
    )
    assert doc["runAs"] == "scheduler"
    assert doc["status"] == "triggered"
    assert doc["environment"] == "production"
    assert store.get_meta(expected_id)["input"] == {"url": None}
    assert state(store, "ECB_FX").last_fire == "2021-07-01T16:30:00.000Z"
    # later ticks in the same minute, and before the next fire, trigger nothing more
    for now in (at(16, 30, 1), at(16, 30, 59), at(16, 29, 0, day=2)):
        assert beat.tick(now).triggered == []
    assert len(executions(store)) == 1
    # Friday's fire
    friday = beat.tick(at(16, 30, 3, day=2))
    assert friday.triggered == [scheduled_execution_id("production", "ECB_FX", at(16, 30, day=2))]
    assert reasons(store, "ECB_FX") == fired_at("ECB_FX", at(16, 30), at(16, 30, day=2))


def test_a_scheduled_run_its_process_refuses_is_told_and_the_others_fire(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Scheduled runs are validated as triggers are: one whose `check` refuses it at its fire
    time (a check that reads the clock, say) is logged and not recorded; the others fire."""
    refusing = {"now": False}

    def check(params: Any) -> None:
        if refusing["now"]:
            raise ValueError("the source is closed today")

    registry.add(process("PICKY", "30 16 * * *", check=check))
    registry.add(process("EASY", "30 16 * * *"))
    beat.tick(at(16, 29))
    refusing["now"] = True
    with caplog.at_level(logging.ERROR, logger=SCHEDULER_LOG):
        result = beat.tick(at(16, 30, 1))
    assert result.triggered == [scheduled_execution_id("production", "EASY", at(16, 30))]
    assert executions(store, "PICKY") == []
    assert "process PICKY: its scheduled run is refused: body: the source is closed today" in [
        record.getMessage() for record in caplog.records
    ]


def test_scheduled_execution_ids_are_deterministic_per_process_environment_and_fire() -> None:
    fire = at(16, 30)
    first = scheduled_execution_id("production", "ECB_FX", fire)
    assert first == scheduled_execution_id("production", "ECB_FX", fire.astimezone())
    assert len({
        first,
        scheduled_execution_id("production", "ECB_FX", at(16, 31)),
        scheduled_execution_id("staging", "ECB_FX", fire),
        scheduled_execution_id("production", "ECB_FX_CROSS", fire),
    }) == 4  # fmt: skip


def test_a_process_runs_in_its_environment(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("STAGED", "* * * * *", environment="staging"))
    beat.tick(at(9, 0, 30))
    beat.tick(at(9, 1, 1))
    staged_id = scheduled_execution_id("staging", "STAGED", at(9, 1))
    assert beat.dispatched.ids == [staged_id]
    assert store.get(staged_id, environment="staging") is not None
    assert store.get(staged_id, environment="production") is None


def test_a_process_without_a_schedule_never_fires(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("MANUAL_ONLY", None))
    for minute in range(5):
        beat.tick(at(10, minute, 1))
    assert executions(store) == []
    listed = describe(effective(registry.get("MANUAL_ONLY"), None))
    assert (listed["schedule"], listed["nextFire"]) == (None, None)


# --- several beats ----------------------------------------------------------------------------


def test_two_beats_give_one_execution_per_fire_time(
    store: ExecutionStore, registry: ProcessRegistry
) -> None:
    registry.add(process("MINUTELY", "* * * * *"))
    registry.add(process("FIVE", "*/5 * * * *"))
    first = Beat(store, registry)
    second = Beat(another_connection(store), registry)
    first.tick(at(12, 0, 10))
    second.tick(at(12, 0, 11))
    for minute in range(1, 11):
        # either may be first; both tick within the minute
        leader, follower = (first, second) if minute % 2 else (second, first)
        leader.tick(at(12, minute, 0.05))
        follower.tick(at(12, minute, 0.4))
        follower.tick(at(12, minute, 4.9))
    minutes = [at(12, minute) for minute in range(1, 11)]
    assert reasons(store, "MINUTELY") == fired_at("MINUTELY", *minutes)
    assert reasons(store, "FIVE") == fired_at("FIVE", at(12, 5), at(12, 10))
    dispatched = first.dispatched.ids + second.dispatched.ids
    assert len(dispatched) == len(set(dispatched)) == 12
    assert sorted(dispatched) == sorted(doc["_id"] for doc in executions(store))
    assert state(store, "MINUTELY").missed == state(store, "FIVE").missed == 0


def test_two_beats_reading_the_same_state_count_missed_fires_once(
    store: ExecutionStore,
    registry: ProcessRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.add(process("SKIPPER", "*/10 * * * *"))
    registry.add(process("LATEST", "*/10 * * * *", missed="latest"))
    first = Beat(store, registry)
    second = Beat(another_connection(store), registry)
    for name in ("SKIPPER", "LATEST"):
        store.advance_schedule(name, iso_ms(at(8, 0)))
    # both beats come back at once: the second read the state before the first wrote any
    before = second.store.process_states()
    monkeypatch.setattr(second.store, "process_states", lambda: before)
    caplog.set_level(logging.WARNING, SCHEDULER_LOG)
    now = at(9, 5)
    one = first.tick(now)
    other = second.tick(now + timedelta(seconds=0.3))
    assert one.skipped == {"SKIPPER": 6, "LATEST": 5}
    assert other.skipped == {}
    assert other.triggered == []
    assert state(store, "SKIPPER").missed == 6
    assert state(store, "LATEST").missed == 5
    assert reasons(store, "SKIPPER") == []
    assert reasons(store, "LATEST") == fired_at("LATEST", at(9, 0))
    assert len(warnings_of(caplog)) == 2
    assert first.dispatched.ids == one.triggered
    assert second.dispatched.ids == []


def test_beats_ticking_at_the_same_moment_in_threads(tmp_path: Path) -> None:
    """Four beats on four connections to one SQLite file, released together by a barrier."""
    path = tmp_path / "beats.db"
    registry = ProcessRegistry(
        [
            process("MINUTELY", "* * * * *"),
            process("SKIPPER", "1 * * * *"),
            process("LATEST", "0 * * * *", missed="latest"),
        ]
    )
    beats = [Beat(SQLiteStore(path), registry) for _ in range(4)]
    beats[0].store.advance_schedule("MINUTELY", iso_ms(at(6, 0, 30)))
    # the other two were last handled at 01:00: the beats come back after five hours
    beats[0].store.advance_schedule("SKIPPER", iso_ms(at(1, 0)))
    beats[0].store.advance_schedule("LATEST", iso_ms(at(1, 0)))
    errors: list[BaseException] = []
    moments = [at(6, minute, 0.1) for minute in range(1, 7)]

    def run(beat: Beat, barrier: threading.Barrier) -> None:
        try:
            for moment in moments:
                barrier.wait(timeout=30)
                beat.tick(moment)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
            barrier.abort()
        finally:
            beat.store.close()

    barrier = threading.Barrier(len(beats))
    threads = [threading.Thread(target=run, args=(beat, barrier)) for beat in beats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    check = SQLiteStore(path)
    try:
        assert reasons(check, "MINUTELY") == fired_at(
            "MINUTELY", *(at(6, minute) for minute in range(1, 7))
        )
        # 01:01 to 05:01 were missed and skipped, counted once; 06:01 was on time
        assert reasons(check, "SKIPPER") == fired_at("SKIPPER", at(6, 1))
        assert state(check, "SKIPPER").missed == 5
        # 02:00 to 06:00 were all late: the latest ran, the others were counted once
        assert reasons(check, "LATEST") == fired_at("LATEST", at(6, 0))
        assert state(check, "LATEST").missed == 4
        dispatched = [i for beat in beats for i in beat.dispatched.ids]
        assert len(dispatched) == len(set(dispatched)) == 8
    finally:
        check.close()


# --- missed fire times after an outage -----------------------------------------------------


def test_outage_policy_skip_skips_late_fires_visibly_and_runs_the_on_time_one(
    beat: Beat,
    registry: ProcessRegistry,
    store: ExecutionStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.add(process("MINUTELY", "* * * * *"))
    beat.tick(at(11, 59, 30))
    beat.tick(at(12, 0, 1))
    # the beat is down from 12:00:05 to 12:10:20
    caplog.set_level(logging.WARNING, SCHEDULER_LOG)
    result = beat.tick(at(12, 10, 20))
    assert result.skipped == {"MINUTELY": 9}
    assert result.triggered == [scheduled_execution_id("production", "MINUTELY", at(12, 10))]
    assert reasons(store, "MINUTELY") == fired_at("MINUTELY", at(12, 0), at(12, 10))
    assert state(store, "MINUTELY").missed == 9
    assert state(store, "MINUTELY").last_fire == "2021-07-01T12:10:00.000Z"
    assert warnings_of(caplog) == [
        "process MINUTELY: skipped 9 missed fire time(s) from 2021-07-01T12:01:00.000Z"
        " to 2021-07-01T12:09:00.000Z (policy skip)"
    ]
    # counted once: the next ticks neither skip nor warn again
    caplog.clear()
    assert beat.tick(at(12, 10, 25)).skipped == {}
    assert beat.tick(at(12, 11, 0.5)).skipped == {}
    assert warnings_of(caplog) == []
    assert state(store, "MINUTELY").missed == 9
    listed = describe(effective(registry.get("MINUTELY"), state(store, "MINUTELY")))
    assert listed["missed"] == 9
    assert listed["missedPolicy"] == "skip"


@pytest.mark.parametrize(
    ("policy", "runs", "missed"),
    [("skip", [], 3), ("latest", [at(12, 45)], 2)],
)
def test_outage_when_every_missed_fire_is_late(
    beat: Beat,
    registry: ProcessRegistry,
    store: ExecutionStore,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    runs: list[datetime],
    missed: int,
) -> None:
    registry.add(process("QUARTERLY", "*/15 * * * *", missed=policy))
    store.advance_schedule("QUARTERLY", iso_ms(at(12, 0)))  # last handled before the outage
    caplog.set_level(logging.WARNING, SCHEDULER_LOG)
    result = beat.tick(at(12, 50))
    assert reasons(store, "QUARTERLY") == fired_at("QUARTERLY", *runs)
    assert result.triggered == [
        scheduled_execution_id("production", "QUARTERLY", fire) for fire in runs
    ]
    assert beat.dispatched.ids == result.triggered
    assert result.skipped == {"QUARTERLY": missed}
    assert state(store, "QUARTERLY").missed == missed
    assert state(store, "QUARTERLY").last_fire == "2021-07-01T12:45:00.000Z"
    last_skipped = "12:45" if policy == "skip" else "12:30"
    assert warnings_of(caplog) == [
        f"process QUARTERLY: skipped {missed} missed fire time(s) from 2021-07-01T12:15:00.000Z"
        f" to 2021-07-01T{last_skipped}:00.000Z (policy {policy})"
    ]
    # back to normal: the next fire runs on time
    beat.tick(at(13, 0, 2))
    assert reasons(store, "QUARTERLY") == fired_at("QUARTERLY", *runs, at(13, 0))
    assert state(store, "QUARTERLY").missed == missed


def test_a_fire_within_the_grace_period_is_not_missed(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("HOURLY", "0 * * * *"))
    beat.tick(at(11, 30))
    result = beat.tick(at(12, 0, 59))  # a slow tick, 59 s after the fire
    assert result.skipped == {}
    assert reasons(store, "HOURLY") == fired_at("HOURLY", at(12, 0))


# --- disabled, enabled, rescheduled ------------------------------------------------------------


def test_a_disabled_process_does_not_fire(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("OFF", "* * * * *", enabled=False))
    for minute in range(6):
        beat.tick(at(12, minute, 1))
    assert executions(store) == []
    assert beat.dispatched.calls == []
    listed = describe(effective(registry.get("OFF"), store.process_states().get("OFF")))
    assert (listed["enabled"], listed["nextFire"]) == (False, None)


def test_disable_and_enable_are_picked_up_on_the_next_tick(
    beat: Beat,
    registry: ProcessRegistry,
    store: ExecutionStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.add(process("MINUTELY", "* * * * *", missed="latest"))
    beat.tick(at(12, 0, 30))
    beat.tick(at(12, 1, 1))
    changed = change_process(store, registry, "MINUTELY", enabled=False, now=at(12, 1, 20))
    assert changed.enabled is False
    assert state(store, "MINUTELY").enabled is False
    caplog.set_level(logging.WARNING, SCHEDULER_LOG)
    for minute in range(2, 8):
        beat.tick(at(12, minute, 1))
    assert reasons(store, "MINUTELY") == fired_at("MINUTELY", at(12, 1))
    enabled = change_process(store, registry, "MINUTELY", enabled=True, now=at(12, 7, 30))
    assert describe(enabled)["nextFire"] == "2021-07-01T12:08:00.000Z"
    # the fire times while it was disabled are neither run nor counted as missed
    result = beat.tick(at(12, 7, 40))
    assert (result.triggered, result.skipped) == ([], {})
    beat.tick(at(12, 8, 2))
    assert reasons(store, "MINUTELY") == fired_at("MINUTELY", at(12, 1), at(12, 8))
    assert state(store, "MINUTELY").missed == 0
    assert warnings_of(caplog) == []


def test_a_process_disabled_in_the_store_keeps_no_backlog_while_the_beat_runs(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("FIVE", "*/5 * * * *", missed="latest"))
    beat.tick(at(6, 2))
    beat.tick(at(6, 5, 1))
    # disabled and enabled again straight in the store (not through change_process)
    store.set_process_state("FIVE", enabled=False)
    for minute in range(10, 6 * 60, 5):
        beat.tick(at(6, 0, 1) + timedelta(minutes=minute))
    assert reasons(store, "FIVE") == fired_at("FIVE", at(6, 5))
    store.set_process_state("FIVE", enabled=True)
    result = beat.tick(at(12, 0, 30))
    assert result.triggered == [scheduled_execution_id("production", "FIVE", at(12, 0))]
    assert result.skipped == {}
    assert reasons(store, "FIVE") == fired_at("FIVE", at(6, 5), at(12, 0))
    assert state(store, "FIVE").missed == 0


def test_rescheduling_is_picked_up_on_the_next_tick_by_the_same_scheduler(
    beat: Beat,
    registry: ProcessRegistry,
    store: ExecutionStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.add(process("DAILY", "0 6 * * *"))
    beat.tick(at(6, 0, 30, day=1))
    beat.tick(at(6, 0, 1, day=2))  # fired at 06:00 on the 2nd
    caplog.set_level(logging.WARNING, SCHEDULER_LOG)
    changed = change_process(store, registry, "DAILY", schedule="*/5 * * * *", now=at(12, 2, day=2))
    assert describe(changed)["schedule"] == "*/5 * * * *"
    assert describe(changed)["nextFire"] == "2021-07-02T12:05:00.000Z"
    result = beat.tick(at(12, 2, 5, day=2))
    assert (result.triggered, result.skipped) == ([], {})
    beat.tick(at(12, 5, 1, day=2))
    beat.tick(at(12, 10, 1, day=2))
    assert reasons(store, "DAILY") == fired_at(
        "DAILY", at(6, 0, day=2), at(12, 5, day=2), at(12, 10, day=2)
    )
    # the five-minute fires between 06:00 and the change were never due: nothing missed
    assert state(store, "DAILY").missed == 0
    assert warnings_of(caplog) == []
    # back to the definition's schedule
    cleared = change_process(store, registry, "DAILY", clear_schedule=True, now=at(12, 11, day=2))
    assert describe(cleared)["schedule"] == "0 6 * * *"
    assert describe(cleared)["nextFire"] == "2021-07-03T06:00:00.000Z"
    beat.tick(at(12, 15, 1, day=2))
    assert len(reasons(store, "DAILY")) == 3


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"schedule": "61 * * * *"}, "schedule: crontab '61 * * * *': minute field '61'"),
        ({"schedule": "* * * *"}, "schedule: crontab '* * * *' must have five fields"),
        ({"schedule": ""}, "schedule: required (five crontab fields)"),
        ({"schedule": "0 0 31 2 *"}, "schedule: crontab '0 0 31 2 *' never fires"),
        ({"timezone": "Atlantis/Capital"}, "schedule: unknown timezone 'Atlantis/Capital'"),
        (
            {"schedule": "0 6 * * *", "timezone": "Europe/Londres"},
            "schedule: unknown timezone 'Europe/Londres'",
        ),
    ],
)
def test_a_bad_reschedule_is_a_bad_request_and_changes_nothing(
    store: ExecutionStore, registry: ProcessRegistry, changes: dict[str, str], error: str
) -> None:
    registry.add(process("DAILY", "0 6 * * *"))
    store.advance_schedule("DAILY", iso_ms(at(6, 0)))
    before = store.process_states()
    with pytest.raises(BadRequest) as raised:
        change_process(store, registry, "DAILY", now=at(7, 0), **changes)
    assert str(raised.value).startswith(error)
    assert store.process_states() == before


def test_rescheduling_a_process_without_a_schedule_needs_a_crontab(
    store: ExecutionStore, registry: ProcessRegistry
) -> None:
    registry.add(process("MANUAL_ONLY", None))
    with pytest.raises(BadRequest, match="schedule: required"):
        change_process(store, registry, "MANUAL_ONLY", timezone="Europe/London")
    assert "MANUAL_ONLY" not in store.process_states()


def test_changing_an_unknown_process_is_not_found(
    store: ExecutionStore, registry: ProcessRegistry
) -> None:
    with pytest.raises(NotFound, match="unknown process 'NOPE'"):
        change_process(store, registry, "NOPE", enabled=False)
    assert store.process_states() == {}


# --- timezones ---------------------------------------------------------------------------------


def test_a_definitions_timezone_sets_the_utc_fire_time(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("NY_OPEN", "30 9 * * 1-5", timezone="America/New_York"))
    beat.tick(at(13, 0))
    assert beat.tick(at(13, 29, 59)).triggered == []
    beat.tick(at(13, 30, 1))  # 09:30 EDT
    assert reasons(store, "NY_OPEN") == fired_at("NY_OPEN", at(13, 30))
    assert reasons(store, "NY_OPEN") == [
        "crontab(NY_OPEN,Thu Jul 01 2021 13:30:00 GMT+0000 (Greenwich Mean Time))"
    ]


def test_a_timezone_override_moves_the_fire_time(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("MORNING", "0 9 * * *"))
    beat.tick(at(6, 0))
    changed = change_process(store, registry, "MORNING", timezone="Europe/London", now=at(6, 1))
    listed = describe(changed)
    assert (listed["schedule"], listed["timezone"]) == ("0 9 * * *", "Europe/London")
    assert listed["nextFire"] == "2021-07-01T08:00:00.000Z"  # 09:00 BST
    assert state(store, "MORNING").timezone == "Europe/London"
    beat.tick(at(8, 0, 1))
    beat.tick(at(9, 0, 1))
    assert reasons(store, "MORNING") == fired_at("MORNING", at(8, 0))
    # a new crontab keeps the overridden timezone; in winter 09:00 London is 09:00Z
    change_process(store, registry, "MORNING", schedule="0 9 * * 1", now=at(9, 5))
    assert state(store, "MORNING").timezone == "Europe/London"
    beat.tick(at(9, 0, 1, day=6, month=12))
    assert reasons(store, "MORNING") == fired_at("MORNING", at(8, 0), at(9, 0, day=6, month=12))


def test_scheduling_across_the_london_spring_gap(
    beat: Beat, registry: ProcessRegistry, store: ExecutionStore
) -> None:
    registry.add(process("NIGHTLY", "*/30 1 * * *", timezone="Europe/London"))
    spring = datetime(2024, 3, 31, 0, 50, tzinfo=UTC)
    beat.tick(spring)
    beat.tick(spring + timedelta(minutes=10, seconds=1))  # 01:00Z = 02:00 BST
    beat.tick(spring + timedelta(minutes=40, seconds=1))
    fire = datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert reasons(store, "NIGHTLY") == [
        "crontab(NIGHTLY,Sun Mar 31 2024 01:00:00 GMT+0000 (Greenwich Mean Time))"
    ]
    assert executions(store)[0]["_id"] == scheduled_execution_id("production", "NIGHTLY", fire)
    assert state(store, "NIGHTLY").missed == 0


# --- the sleep between ticks -------------------------------------------------------------------


def test_seconds_to_next_sleeps_until_the_next_fire_within_bounds(
    beat: Beat, registry: ProcessRegistry
) -> None:
    registry.add(process("MINUTELY", "* * * * *"))
    assert beat.service.seconds_to_next(at(12, 0, 57), ceiling=5) == 5  # no state yet: ceiling
    beat.tick(at(12, 0, 57))
    assert beat.service.seconds_to_next(at(12, 0, 58), ceiling=5) == pytest.approx(2)
    assert beat.service.seconds_to_next(at(12, 0, 30), ceiling=5) == 5
    assert beat.service.seconds_to_next(at(12, 1, 3), ceiling=5) == 0.05  # overdue: now


def test_seconds_to_next_without_schedules_is_the_ceiling(
    beat: Beat, registry: ProcessRegistry
) -> None:
    registry.add(process("MANUAL_ONLY", None))
    beat.tick(at(12, 0))
    assert beat.service.seconds_to_next(at(12, 0), ceiling=5) == 5
