"""Timestamps in the forms the execution document uses."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso_ms(moment: datetime | None = None) -> str:
    """`2021-07-01T16:30:13.390Z`: ISO 8601, UTC, milliseconds, `Z` (now by default)."""
    if moment is None:
        seconds, frac = divmod(time.time_ns(), 1_000_000_000)
        return f"{_second(seconds)}.{frac // 1_000_000:03d}Z"
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


#: the last second stamped, and its text (a phase logs many lines within one second)
_last_second: tuple[int, str] = (-1, "")


def _second(seconds: int) -> str:
    """`2021-07-01T16:30:13`: a second since the epoch, UTC, its text kept for the next call."""
    global _last_second
    second, base = _last_second  # one tuple read: safe across threads
    if second != seconds:
        base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, base)
    return base


def log_stamp(ns: int | None = None) -> str:
    """`2021-07-01T16:30:13.390935800Z[UTC]`: the prefix of a log line, in nanoseconds."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{frac:09d}Z[UTC]"


def log_line(level: str, text: str, ns: int | None = None) -> str:
    """One log line as the platform writes it: stamp, level, text."""
    return f"{log_stamp(ns)} {level} {text}"


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 date or datetime; naive values are taken as UTC."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
