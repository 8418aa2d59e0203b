"""Real `procexec beat` processes on the real Redis, with a SQLite store in tmp_path.

- Two beats at once: a process scheduled every minute fires at each minute boundary with the
  seed page's reason, exactly once per fire time, and runs to success on a real worker; a
  process disabled and one rescheduled through the CLI while the beats run are picked up.
- A stopped beat, restarted (twice over) after its processes' fire times went by, applies
  each process's missed-run policy, counts and logs the skipped fire times once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.crontab import crontab_reason
from procexec.engine.scheduler import scheduled_execution_id
from procexec.engine.settings import Settings
from procexec.engine.timeutil import iso_ms
from procexec.workers.beat import MAX_TICK, ProcessScheduler
from procexec.workers.celery_app import TRIGGER_TASK, make_celery
from tests.scheduling.conftest import Deployment, Deployments

BEAT_STARTED = r"beat: Starting\.\.\."
WORKER_READY = r"@\S+ ready\."
TERMINAL = {"success", "warning", "failed"}

STEP = """
@{var}.phase("EXTRACT")
def _{var}_extract(ctx, previous):
    ctx.info("scheduled run of {name}")
    return 1
"""


def module(*definitions: tuple[str, str]) -> str:
    """A module of one-phase processes: (name, keyword arguments of `Process`)."""
    lines = ["from procexec import Process", ""]
    for name, arguments in definitions:
        var = name.lower()
        lines.append(f"{var} = Process({name!r}, {arguments})")
        lines.append(STEP.format(var=var, name=name))
    return "\n".join(lines)


def wait_until(
    what: str, condition: Callable[[], Any], deadline: float, every: float = 0.25
) -> Any:
    """Poll `condition` until it returns something true, or fail at `deadline` (time.time())."""
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(every)


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def reason_of(name: str, fire: datetime) -> str:
    return crontab_reason(name, fire)


def by_reason(deployment: Deployment, name: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in deployment.executions(name):
        found.setdefault(doc["reason"], []).append(doc)
    return found


def finished(deployment: Deployment, name: str, fire: datetime) -> dict[str, Any] | None:
    runs = by_reason(deployment, name).get(reason_of(name, fire), [])
    return runs[0] if runs and runs[0]["status"] in TERMINAL else None


# --- two beats, fires at the minute, disable and reschedule picked up ---------------------


@pytest.mark.redis
@pytest.mark.e2e
def test_two_beats_fire_each_minute_once_and_pick_up_changes(deployments: Deployments) -> None:
    deployment = deployments(
        module(
            ("EVERY_MINUTE", 'schedule="* * * * *"'),
            ("TO_DISABLE", 'schedule="* * * * *"'),
            ("TO_RESCHEDULE", 'schedule="0 0 1 1 *"'),  # yearly, until rescheduled
        )
    )
    worker = deployment.worker()
    beats = [deployment.beat("beat-a"), deployment.beat("beat-b")]
    for beat in beats:
        beat.wait_for_output(BEAT_STARTED, timeout=60)
        beat.wait_for_output(r"maxinterval -> 5\.00 seconds", timeout=5)
        beat.wait_for_output(r"procexec: 3 scheduled process\(es\)", timeout=5)
    worker.wait_for_output(WORKER_READY, timeout=60)
    names = ("EVERY_MINUTE", "TO_DISABLE", "TO_RESCHEDULE")
    wait_until(
        "the beats to take up the schedules",
        lambda: all((state := deployment.states().get(name)) and state.last_fire for name in names),
        time.time() + 30,
    )
    # the first minute boundary both beats are surely ticking for
    first = minute_floor(datetime.now(UTC) + timedelta(seconds=2)) + timedelta(minutes=1)
    second = first + timedelta(minutes=1)

    # the first fire: both processes every minute, once each, run to success
    for name in ("EVERY_MINUTE", "TO_DISABLE"):
        doc = wait_until(
            f"{name} to run for {first:%H:%M}",
            lambda name=name: finished(deployment, name, first),
            first.timestamp() + 60,
        )
        assert doc["status"] == "success", doc
        assert doc["_id"] == scheduled_execution_id("production", name, first)
    assert by_reason(deployment, "TO_RESCHEDULE") == {}

    # while the beats run: disable one, reschedule another to every minute
    disabled = deployment.cli("process", "disable", "TO_DISABLE")
    assert disabled.returncode == 0, disabled.stderr
    assert "TO_DISABLE: disabled" in disabled.stdout
    rescheduled = deployment.cli("process", "schedule", "TO_RESCHEDULE", "* * * * *")
    assert rescheduled.returncode == 0, rescheduled.stderr
    assert f"next fire {iso_ms(second)}" in rescheduled.stdout
    assert time.time() < second.timestamp() - 1, "the changes came too late to check them"

    # the second fire: EVERY_MINUTE and TO_RESCHEDULE, not TO_DISABLE
    for name in ("EVERY_MINUTE", "TO_RESCHEDULE"):
        doc = wait_until(
            f"{name} to run for {second:%H:%M}",
            lambda name=name: finished(deployment, name, second),
            second.timestamp() + 60,
        )
        assert doc["status"] == "success", doc
    time.sleep(MAX_TICK + 1)  # every beat has ticked past the second fire

    every_minute = deployment.executions("EVERY_MINUTE")
    reasons = [doc["reason"] for doc in every_minute]
    assert len(reasons) == len(set(reasons)), f"a fire time ran twice: {sorted(reasons)}"
    assert reason_of("EVERY_MINUTE", first) in reasons
    assert reason_of("EVERY_MINUTE", second) in reasons
    for fire in (first, second):
        doc = by_reason(deployment, "EVERY_MINUTE")[reason_of("EVERY_MINUTE", fire)][0]
        assert doc["reason"] == (
            f"crontab(EVERY_MINUTE,{fire:%a %b %d %Y %H:%M}:00 GMT+0000 (Greenwich Mean Time))"
        )
        assert doc["trigger"] == "scheduled"
        assert doc["runAs"] == "scheduler"
        assert doc["status"] == "success"
        assert [phase["status"] for phase in doc["phases"]] == ["success"]
        assert doc["phases"][0]["log"][0].endswith("info scheduled run of EVERY_MINUTE")
        # exactly one of the two beats triggered it
        line = f"triggered scheduled execution {doc['_id']}"
        logged = [beat.name for beat in beats if line in beat.output()]
        assert len(logged) == 1, logged
    assert reason_of("TO_DISABLE", first) in by_reason(deployment, "TO_DISABLE")
    assert reason_of("TO_DISABLE", second) not in by_reason(deployment, "TO_DISABLE")
    assert sorted(by_reason(deployment, "TO_RESCHEDULE")) == [reason_of("TO_RESCHEDULE", second)]
    assert all(beat.alive() for beat in beats)

    listed = deployment.process_list()
    assert listed["TO_DISABLE"]["enabled"] is False
    assert listed["TO_DISABLE"]["nextFire"] is None
    assert listed["TO_RESCHEDULE"]["schedule"] == "* * * * *"
    assert {name: listed[name]["missed"] for name in names} == dict.fromkeys(names, 0)
    for beat in beats:
        assert "missed fire time" not in beat.output()


# --- missed fire times after an outage ----------------------------------------------------------


@pytest.mark.redis
@pytest.mark.e2e
def test_restarted_beats_apply_the_missed_run_policy_once(deployments: Deployments) -> None:
    now = datetime.now(UTC)
    # three fire times, four to two minutes ago: all later than the grace period allows
    fires = [minute_floor(now) - timedelta(minutes=back) for back in (4, 3, 2)]
    minutes = ",".join(str(fire.minute) for fire in fires)
    deployment = deployments(
        module(
            ("SKIPPER", f'schedule="{minutes} * * * *"'),
            ("LATEST", f'schedule="{minutes} * * * *", missed="latest"'),
        )
    )
    # a beat runs, then stops: the outage starts before the first of the three fire times
    beat = deployment.beat("beat-before")
    beat.wait_for_output(BEAT_STARTED, timeout=60)
    wait_until(
        "the beat to take up the schedules",
        lambda: all(
            (state := deployment.states().get(name)) and state.last_fire
            for name in ("SKIPPER", "LATEST")
        ),
        time.time() + 30,
    )
    beat.stop()
    outage_start = iso_ms(minute_floor(now) - timedelta(minutes=6))
    for name in ("SKIPPER", "LATEST"):
        deployment.rewind(name, outage_start)
    assert deployment.process_list()["SKIPPER"]["missed"] == 0

    # two beats come back at once
    beats = [deployment.beat("beat-a"), deployment.beat("beat-b")]
    for restarted in beats:
        restarted.wait_for_output(BEAT_STARTED, timeout=60)
    wait_until(
        "the missed fire times to be handled",
        lambda: all(
            deployment.states()[name].last_fire == iso_ms(fires[-1])
            for name in ("SKIPPER", "LATEST")
        ),
        time.time() + 30,
    )
    time.sleep(MAX_TICK + 1)  # every beat has ticked again since

    # skip: no run, three counted, logged once
    assert deployment.executions("SKIPPER") == []
    # latest: one run, for the latest missed fire time, the other two counted
    latest = deployment.executions("LATEST")
    assert [doc["reason"] for doc in latest] == [reason_of("LATEST", fires[-1])]
    assert latest[0]["_id"] == scheduled_execution_id("production", "LATEST", fires[-1])
    assert latest[0]["trigger"] == "scheduled"
    listed = deployment.process_list()
    assert (listed["SKIPPER"]["missed"], listed["LATEST"]["missed"]) == (3, 2)
    assert listed["SKIPPER"]["lastFire"] == listed["LATEST"]["lastFire"] == iso_ms(fires[-1])
    outputs = "\n".join(restarted.output() for restarted in beats)
    skipped_lines = re.findall(
        r"WARNING procexec\.engine\.scheduler: process \w+: skipped .*", outputs
    )
    assert sorted(skipped_lines) == sorted(
        [
            f"WARNING procexec.engine.scheduler: process SKIPPER: skipped 3 missed fire time(s) "
            f"from {iso_ms(fires[0])} to {iso_ms(fires[2])} (policy skip)",
            f"WARNING procexec.engine.scheduler: process LATEST: skipped 2 missed fire time(s) "
            f"from {iso_ms(fires[0])} to {iso_ms(fires[1])} (policy latest)",
        ]
    )
    assert all(restarted.alive() for restarted in beats)


# --- the beat's own settings ----------------------------------------------------------------------


def test_the_beat_ticks_at_least_every_few_seconds_when_celery_passes_no_max_interval(
    tmp_path: Path,
) -> None:
    """celery's beat service hands its scheduler `max_interval=None` unless configured; the
    scheduler must then keep its own short interval, or changes would wait five minutes."""
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_EXAMPLES": "true"})
    app = make_celery(settings)
    scheduler = ProcessScheduler(app, max_interval=None, lazy=True)
    try:
        assert scheduler.max_interval == MAX_TICK <= 5
        assert "procexec: 1 scheduled process(es)" in scheduler.info  # ECB_FX
    finally:
        scheduler.service.store.close()


def test_the_beat_s_entries_name_a_task_the_workers_have(tmp_path: Path) -> None:
    """Its entries (what `celery beat` shows) name a task that exists (the workers' test of
    it running: tests/integration/test_flower.py)."""
    from procexec.workers.tasks import app as workers_app

    app = make_celery(Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)}))
    scheduler = ProcessScheduler(app, max_interval=None, lazy=True)
    try:
        scheduler.setup_schedule()
        [entry] = scheduler.data.values()  # ECB_FX, the one example with a crontab
        assert (entry.task, entry.args) == (TRIGGER_TASK, ("ECB_FX",))
        assert entry.task in workers_app.tasks
    finally:
        scheduler.service.store.close()


def test_the_beat_s_housekeeping_keeps_finished_runs_as_long_as_the_setting_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROCEXEC_RETENTION_DAYS reaches the housekeeper, and the store is told it at the beat's
    start (MongoDB makes or changes its TTL indexes then; SQLite needs nothing)."""
    from procexec.engine.store.sqlite import SQLiteStore

    told: list[float] = []
    monkeypatch.setattr(SQLiteStore, "keep_for", lambda self, days: told.append(days))
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_RETENTION_DAYS": "30"}
    )
    scheduler = ProcessScheduler(make_celery(settings), max_interval=None, lazy=True)
    try:
        assert scheduler.housekeeper.retention_days == 30
        assert told == [30]
    finally:
        scheduler.service.store.close()
