"""Crontab arithmetic in a named timezone, with defined behaviour across daylight-saving changes.

A schedule is five crontab fields read as *wall-clock* times in its timezone (UTC by default):

* each matching wall-clock time fires exactly once;
* a time that does not exist (the hour skipped when clocks go forward) fires at the first
  instant after the gap (several such times collapse into that one fire);
* a time that occurs twice (the hour repeated when clocks go back) fires once, at its first
  occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from procexec.engine.errors import excerpt

#: how far a wall-clock time may fall inside a daylight-saving gap (no zone skips more)
_MAX_GAP = timedelta(hours=3)
#: the five crontab fields, in order
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


class ScheduleError(ValueError):
    """A crontab or timezone that cannot be used; the message says which and why."""


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """Whether a naive wall-clock time exists in `zone` (is not inside a forward gap)."""
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


@dataclass(frozen=True)
class Crontab:
    """Five crontab fields in a timezone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"crontab '{excerpt(self.expression)}' must have five fields "
                "(minute hour day-of-month month day-of-week)"
            )
        if not croniter.is_valid(self.expression):
            for index, (name, value) in enumerate(zip(FIELDS, fields, strict=True)):
                probe = ["*"] * 5
                probe[index] = value
                if not croniter.is_valid(" ".join(probe)):
                    raise ScheduleError(
                        f"crontab '{excerpt(self.expression)}': {name} field '{excerpt(value)}' "
                        f"is not valid"
                    )
            raise ScheduleError(f"crontab '{excerpt(self.expression)}' is not valid")
        try:
            croniter(self.expression, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(
                f"crontab '{excerpt(self.expression)}' never fires (no date has that day and month)"
            ) from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown timezone '{excerpt(self.timezone)}'") from None

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _to_utc(self, local: datetime) -> datetime:
        """A naive wall-clock time as the UTC instant it fires at."""
        if not _exists(local, self.zone):
            probe = local
            while not _exists(probe, self.zone) and probe - local < _MAX_GAP:
                probe += timedelta(minutes=1)
            local = probe.replace(second=0, microsecond=0)
        # fold=0: the first occurrence of a repeated time
        return local.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """The fire times (UTC, ascending, distinct) strictly after `after`."""
        after = after.astimezone(UTC)
        local_start = after.astimezone(self.zone).replace(tzinfo=None)
        # Start an hour back so that a time repeated by a backward change is not missed
        # when `after` lies in its second pass; earlier results are dropped below.
        walker = croniter(self.expression, local_start - timedelta(hours=1))
        last: datetime | None = None
        while True:
            fire = self._to_utc(walker.get_next(datetime))
            if fire <= after or fire == last:
                continue
            last = fire
            yield fire

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after`."""
        return next(self.fires_after(after))

    def fires_between(
        self, after: datetime, until: datetime, limit: int = 10_000
    ) -> list[datetime]:
        """Fire times in `(after, until]`, at most `limit` of them (the latest ones kept)."""
        fires: list[datetime] = []
        for fire in self.fires_after(after):
            if fire > until:
                break
            fires.append(fire)
            if len(fires) > limit:
                fires.pop(0)
        return fires


def js_date(moment: datetime) -> str:
    """A UTC instant as JavaScript's `Date.toString()` writes it on a UTC server.

    `Thu Jul 01 2021 16:30:00 GMT+0000 (Greenwich Mean Time)`, as in the seed page's reasons.
    """
    return moment.astimezone(UTC).strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Greenwich Mean Time)")


def crontab_reason(process: str, fire: datetime) -> str:
    """The reason of a scheduled execution: the process and its *scheduled* fire time."""
    return f"crontab({process},{js_date(fire)})"
