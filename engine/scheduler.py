"""Scheduled runs: which fire times are due, each triggered at most once, none silently missed.

Any number of schedulers may tick at once (several beats, for availability). Each fire time
gets a deterministic execution id, so the store's unique key lets exactly one trigger through;
and `last_fire` only moves forward through a conditional update, so a skipped fire time is
counted once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from procexec.engine import audit
from procexec.engine.concurrency import effective_limit
from procexec.engine.crontab import Crontab, ScheduleError, crontab_reason
from procexec.engine.domain import Trigger
from procexec.engine.errors import BadRequest, DuplicateExecution
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.store.base import ExecutionStore, ProcessState
from procexec.engine.timeutil import iso_ms, parse_iso
from procexec.engine.trigger_service import TriggerService

if TYPE_CHECKING:
    from procexec.engine.notify import Notifier

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1d8a52-3b0e-4c3a-9d7e-5a1c2b3d4e5f")
#: a fire time handled later than this after it is "missed" (beat was down)
DEFAULT_GRACE = timedelta(seconds=60)


def scheduled_execution_id(environment: str, process: str, fire: datetime) -> str:
    """The one id that the run of `process` at `fire` can have."""
    return str(uuid.uuid5(_NAMESPACE, f"scheduled/{environment}/{process}/{iso_ms(fire)}"))


#: the parameter a scheduled run gives its fire time in, where its process declares it
FIRE_TIME = "fire_time"


def scheduled_body(process: Process, fire: datetime) -> dict[str, Any] | None:
    """The parameters of `process`'s scheduled run at `fire`: `{"fire_time": <ISO UTC>}` where
    the process declares `fire_time`, else none (its defaults)."""
    if FIRE_TIME in process.parameters_model.names:
        return {FIRE_TIME: iso_ms(fire)}
    return None


def trigger_fire(
    triggers: TriggerService, process: Process, fire: datetime, *, run_as: str = "scheduler"
) -> dict[str, Any]:
    """Record and dispatch the run of `process` at `fire`, as the beat and a backfill both make
    it: trigger `scheduled`, its one id and reason, its fire time as `fire_time` where declared.

    Raises `DuplicateExecution` when that fire time's run exists (whoever made it)."""
    return triggers.trigger(
        process.name,
        run_as=run_as,
        environment=process.environment,
        body=scheduled_body(process, fire),
        trigger=Trigger.SCHEDULED,
        reason=crontab_reason(process.name, fire),
        execution_id=scheduled_execution_id(process.environment, process.name, fire),
    )


@dataclass(frozen=True)
class EffectiveSchedule:
    """A process's schedule after operators' overrides."""

    process: Process
    enabled: bool
    crontab: Crontab | None
    state: ProcessState

    @property
    def next_fire(self) -> datetime | None:
        if not self.enabled or self.crontab is None:
            return None
        after = parse_iso(self.state.last_fire) if self.state.last_fire else datetime.now(UTC)
        return self.crontab.next_after(after)


def effective(process: Process, state: ProcessState | None) -> EffectiveSchedule:
    state = state or ProcessState(process.name)
    enabled = process.enabled if state.enabled is None else state.enabled
    expression = state.schedule if state.schedule is not None else process.schedule
    crontab = None
    if expression:
        try:
            crontab = Crontab(expression, state.timezone or process.timezone)
        except ScheduleError as exc:  # an override stored before validation existed
            logger.error("process %s: %s; not scheduled", process.name, exc)
    return EffectiveSchedule(process, enabled, crontab, state)


@dataclass
class TickResult:
    triggered: list[str]
    skipped: dict[str, int]
    #: the runs triggered, by process
    fired: dict[str, int] = field(default_factory=dict)


class SchedulerService:
    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        triggers: TriggerService,
        *,
        grace: timedelta = DEFAULT_GRACE,
        run_as: str = "scheduler",
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.triggers = triggers
        self.grace = grace
        self.run_as = run_as
        #: tells the operator's webhook of missed fire times; None: nothing is
        self.notifier = notifier

    def schedules(self) -> list[EffectiveSchedule]:
        states = self.store.process_states()
        return [effective(process, states.get(process.name)) for process in self.registry]

    def tick(self, now: datetime | None = None) -> TickResult:
        """Trigger every fire time due by `now`; skip (visibly) what the policy skips."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        result = TickResult([], {})
        for schedule in self.schedules():
            if schedule.crontab is None:
                continue
            if not schedule.enabled:
                self._pass_disabled(schedule, schedule.crontab, now)
                continue
            self._tick_one(schedule, schedule.crontab, now, result)
        return result

    def _pass_disabled(self, schedule: EffectiveSchedule, crontab: Crontab, now: datetime) -> None:
        """Let a disabled process's fire times go by: not run, and not missed once enabled."""
        last = schedule.state.last_fire
        if last is None:
            self.store.advance_schedule(schedule.process.name, iso_ms(now))
            return
        fires = crontab.fires_between(parse_iso(last), now, limit=1)
        if fires:
            self.store.advance_schedule(schedule.process.name, iso_ms(fires[-1]))

    def _tick_one(
        self, schedule: EffectiveSchedule, crontab: Crontab, now: datetime, result: TickResult
    ) -> None:
        process = schedule.process
        last = schedule.state.last_fire
        if last is None:
            # First sight of this schedule: start from now, do not backfill history.
            self.store.advance_schedule(process.name, iso_ms(now))
            return
        fires = crontab.fires_between(parse_iso(last), now)
        if not fires:
            return
        late = [fire for fire in fires if now - fire > self.grace]
        run = [fire for fire in fires if fire not in late]
        if process.missed == "latest" and late and fires[-1] in late:
            run.append(late.pop())
        for fire in sorted(run):
            try:
                doc = trigger_fire(self.triggers, process, fire, run_as=self.run_as)
            except DuplicateExecution:
                continue  # another scheduler triggered this fire time
            except BadRequest as exc:  # refused by its process's own `check`: told, not run
                logger.error("process %s: its scheduled run is refused: %s", process.name, exc)
                continue
            result.triggered.append(doc["_id"])
            result.fired[process.name] = result.fired.get(process.name, 0) + 1
        if self.store.advance_schedule(process.name, iso_ms(fires[-1]), missed=len(late)) and late:
            result.skipped[process.name] = len(late)
            logger.warning(
                "process %s: skipped %d missed fire time(s) from %s to %s (policy %s)",
                process.name,
                len(late),
                iso_ms(late[0]),
                iso_ms(late[-1]),
                process.missed,
            )
            if self.notifier is not None:
                missed = f"skipped {len(late)} missed fire time(s) from {iso_ms(late[0])} to "
                missed += f"{iso_ms(late[-1])} (policy {process.missed})"
                self.notifier.missed(process.name, process.environment, missed)

    def seconds_to_next(self, now: datetime | None = None, ceiling: float = 5.0) -> float:
        """How long a scheduler may sleep before its next tick."""
        now = now or datetime.now(UTC)
        upcoming = [s.next_fire for s in self.schedules() if s.next_fire is not None]
        if not upcoming:
            return ceiling
        return max(0.05, min(ceiling, (min(upcoming) - now).total_seconds()))


def describe(item: EffectiveSchedule) -> dict[str, object]:
    """A process as the process list shows it: definition, overrides, schedule state."""
    process, state = item.process, item.state
    next_fire = item.next_fire
    return {
        "name": process.name,
        "service": process.service,
        "description": process.description,
        "environment": process.environment,
        "enabled": item.enabled,
        "schedule": item.crontab.expression if item.crontab else None,
        "timezone": item.crontab.timezone if item.crontab else process.timezone,
        "missedPolicy": process.missed,
        "nextFire": iso_ms(next_fire) if next_fire else None,
        "lastFire": state.last_fire,
        "missed": state.missed,
        "phases": [phase.name for phase in process.phases],
        "defaults": process.parameters_model.defaults(),
        "parameters": process.parameters_model.schema(),
        "subscriptions": list(process.subscriptions),
        "follows": {name: list(outcomes) for name, outcomes in process.follows.items()},
        "maxRunning": effective_limit(process, state),
        "limitKey": process.limit_key,
    }


def change_process(
    store: ExecutionStore,
    registry: ProcessRegistry,
    name: str,
    *,
    enabled: bool | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    clear_schedule: bool = False,
    now: datetime | None = None,
    who: str,
) -> EffectiveSchedule:
    """Enable, disable or reschedule a process; validates before storing anything.

    A changed schedule, or a disabled process enabled, counts its fire times from `now`: the
    fire times before the change are neither run nor counted as missed.
    """
    from procexec.engine.errors import NotFound, excerpt

    process = registry.get(name)
    if process is None:
        raise NotFound(f"unknown process '{excerpt(name)}'")
    before = effective(process, store.process_states().get(name))
    overrides: dict[str, object] = {}
    if enabled is not None:
        overrides["enabled"] = enabled
    if clear_schedule:
        overrides["schedule"] = None
        overrides["timezone"] = None
    elif schedule is not None or timezone is not None:
        state = before.state
        expression = schedule if schedule is not None else state.schedule or process.schedule
        zone = timezone or state.timezone or process.timezone
        if not expression:
            raise BadRequest("schedule: required (five crontab fields)")
        needed = process.parameters_model.required()
        if needed:
            raise BadRequest(
                f"schedule: {name}'s parameter '{needed[0]}' has no default, and a scheduled "
                "run gives no parameters"
            )
        try:
            Crontab(expression, zone)
        except ScheduleError as exc:
            raise BadRequest(f"schedule: {exc}") from None
        overrides["schedule"] = expression
        overrides["timezone"] = zone
    state = store.set_process_state(name, **overrides)
    after = effective(process, state)
    if enabled is not None:
        audit.record(store, who, "enable" if enabled else "disable", name)
    if "schedule" in overrides:
        details = {"schedule": overrides["schedule"], "timezone": overrides["timezone"]}
        audit.record(store, who, "schedule", name, **details)
    if after.enabled and (not before.enabled or after.crontab != before.crontab):
        store.advance_schedule(name, iso_ms(now or datetime.now(UTC)))
        after = effective(process, store.process_states()[name])
    return after
