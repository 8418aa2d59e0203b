"""Backfill: the runs a process's schedule would have made over a past range of time.

Each fire time in the range gets the very run the beat makes for it (`scheduler.trigger_fire`):
trigger `scheduled`, the same reason, the same deterministic id, its fire time as `fire_time`
where the process declares one. So a fire time is never run twice, whoever makes its run first
(the beat, a second beat, a backfill, a second backfill): the store's unique key lets one in.

The range is `[start, end)`: `start` included, `end` not (a day is `2021-07-01` to
`2021-07-02`); it must lie in the past and hold at most `MAX_FIRES` fire times. The runs are
sent one after the other, `SEND_PAUSE` seconds apart (at most 100 a second), each recorded
before it is dispatched (the document is the outbox: a dispatch that fails is sent again by
the housekeeper). A disabled process may be backfilled: a backfill is asked for explicitly.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from procexec.engine import audit
from procexec.engine.crontab import Crontab
from procexec.engine.errors import BadRequest, Conflict, DuplicateExecution, NotFound, excerpt
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.scheduler import effective, scheduled_execution_id, trigger_fire
from procexec.engine.store.base import ExecutionStore
from procexec.engine.timeutil import iso_ms, parse_iso
from procexec.engine.trigger_service import TriggerService

logger = logging.getLogger(__name__)

#: the most fire times one backfill makes runs for (a longer range is refused: split it)
MAX_FIRES = 1000
#: the seconds between two runs sent (at most 100 a second: 1000 runs in about 10 s)
SEND_PAUSE = 0.01

#: what became of a fire time: its run made now, or there already (made by the beat or an
#: earlier backfill), or refused by its process's `check`; in a dry run, `new` or `existed`
MADE, EXISTED, REFUSED, NEW = "made", "existed", "refused", "new"


@dataclass(frozen=True)
class BackfillRun:
    """One fire time of a backfill and what became of its run."""

    fire: datetime
    id: str
    state: str
    message: str | None = None

    def describe(self) -> dict[str, Any]:
        item: dict[str, Any] = {"fireTime": iso_ms(self.fire), "id": self.id, "state": self.state}
        if self.message is not None:
            item["message"] = self.message
        return item


@dataclass(frozen=True)
class Backfill:
    """A backfill's range, and its runs in fire-time order."""

    process: str
    start: datetime
    end: datetime
    dry_run: bool
    runs: list[BackfillRun] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for run in self.runs if run.state == state)

    def describe(self) -> dict[str, Any]:
        """As the API answers it."""
        return {
            "process": self.process,
            "from": iso_ms(self.start),
            "to": iso_ms(self.end),
            "dryRun": self.dry_run,
            "runs": [run.describe() for run in self.runs],
            **{state: self.count(state) for state in (MADE, EXISTED, REFUSED, NEW)},
        }


def parse_time(name: str, value: object) -> datetime:
    """An ISO 8601 date or time (without an offset, UTC) as a UTC instant; a `BadRequest`
    naming `name` otherwise."""
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be an ISO 8601 time, such as 2021-07-01T00:00:00Z")
    try:
        return parse_iso(value.strip())
    except OverflowError:
        raise BadRequest(f"{name}: '{excerpt(value)}' is out of range") from None
    except ValueError:
        raise BadRequest(
            f"{name}: '{excerpt(value)}' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z"
        ) from None


def fire_times(
    process: Process, crontab: Crontab, start: datetime, end: datetime
) -> list[datetime]:
    """The fire times of `crontab` in `[start, end)`; a `BadRequest` when more than
    `MAX_FIRES`."""
    try:
        fires = itertools.takewhile(
            lambda fire: fire < end, crontab.fires_after(start - timedelta(microseconds=1))
        )
        found = list(itertools.islice(fires, MAX_FIRES + 1))
    except (OverflowError, ValueError):  # a time at the end of the calendar
        raise BadRequest(f"from: {start.isoformat()} is out of range") from None
    if len(found) > MAX_FIRES:
        raise BadRequest(
            f"from, to: {process.name}'s schedule fires more than {MAX_FIRES} times from "
            f"{iso_ms(start)} to {iso_ms(end)}; a backfill makes at most {MAX_FIRES} runs: "
            "split the range"
        )
    return found


class BackfillService:
    """Makes the runs of a process's past fire times, as the beat would have made them."""

    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        triggers: TriggerService,
        *,
        pause: float = SEND_PAUSE,
        run_as: str = "scheduler",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.registry = registry
        self.triggers = triggers
        self.pause = pause
        self.run_as = run_as
        self.sleep = sleep

    def process(self, name: str) -> Process:
        """The process called `name`; `NotFound` otherwise."""
        process = self.registry.get(name)
        if process is None:
            raise NotFound(f"unknown process '{excerpt(name)}'")
        return process

    def plan(self, name: str, start: Any, end: Any, *, now: datetime | None = None) -> Backfill:
        """The fire times of `name`'s schedule (its operators' override included) in
        `[start, end)`, each `new` or `existed`; nothing made. `start` and `end` are ISO 8601
        texts or instants; a `BadRequest` naming what is wrong with them, a `Conflict` for a
        process without a schedule."""
        process = self.process(name)
        begin = start if isinstance(start, datetime) else parse_time("from", start)
        until = end if isinstance(end, datetime) else parse_time("to", end)
        begin, until = begin.astimezone(UTC), until.astimezone(UTC)
        now = (now or datetime.now(UTC)).astimezone(UTC)
        if until <= begin:
            raise BadRequest(f"to: {iso_ms(until)} must be after from ({iso_ms(begin)})")
        if until > now:
            raise BadRequest(
                f"to: {iso_ms(until)} is in the future: a backfill makes the runs of past fire "
                "times (the beat makes the others)"
            )
        schedule = effective(process, self.store.process_states().get(name))
        if schedule.crontab is None:
            raise Conflict(f"process {name} has no schedule: nothing to backfill")
        runs = []
        for fire in fire_times(process, schedule.crontab, begin, until):
            execution_id = scheduled_execution_id(process.environment, name, fire)
            there = self.store.get(execution_id) is not None
            runs.append(BackfillRun(fire, execution_id, EXISTED if there else NEW))
        return Backfill(name, begin, until, True, runs)

    def backfill(
        self,
        name: str,
        start: Any,
        end: Any,
        *,
        who: str,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> Backfill:
        """Make the run of each fire time in `[start, end)` that has none (`plan`), and record
        the backfill in the audit trail; a dry run makes and records nothing."""
        planned = self.plan(name, start, end, now=now)
        if dry_run:
            return planned
        process = self.process(name)
        runs: list[BackfillRun] = []
        sent = 0
        for run in planned.runs:
            if run.state == EXISTED:
                runs.append(run)
                continue
            if sent and self.pause > 0:
                self.sleep(self.pause)
            try:
                trigger_fire(self.triggers, process, run.fire, run_as=self.run_as)
            except DuplicateExecution:  # made meanwhile (the beat, another backfill)
                runs.append(BackfillRun(run.fire, run.id, EXISTED))
                continue
            except BadRequest as exc:  # refused by its process's `check`, as the beat's would be
                logger.error("process %s: the run at %s is refused: %s", name, run.fire, exc)
                runs.append(BackfillRun(run.fire, run.id, REFUSED, str(exc)))
                continue
            sent += 1
            runs.append(BackfillRun(run.fire, run.id, MADE))
        done = Backfill(name, planned.start, planned.end, False, runs)
        audit.record(
            self.store,
            who,
            "backfill",
            name,
            **{"from": iso_ms(done.start), "to": iso_ms(done.end)},
            made=done.count(MADE),
            existed=done.count(EXISTED),
            refused=done.count(REFUSED),
        )
        return done
