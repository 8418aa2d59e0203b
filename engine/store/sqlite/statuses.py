"""The statuses of the SQLite store's partial indexes, as SQL.

The housekeeping's indexes hold only the runs it looks for: active runs by heartbeat,
triggered runs by when they were sent, finished runs by when they finished. A run's status
change then touches each of them at most once, where an index over every run keyed by status
was rewritten at each change. SQLite uses a partial index only for a query whose WHERE holds
the index's own terms, so the index and its queries take them from here, as one text."""

from __future__ import annotations

from collections.abc import Iterable

from procexec.engine.domain import ACTIVE, TERMINAL, Status

_KNOWN = frozenset(status.value for status in Status)


def status_in(statuses: Iterable[str]) -> str:
    """`status` among `statuses` (each a status of the platform's set), as an SQL term."""
    chosen = sorted(set(statuses))
    if not chosen or not set(chosen) <= _KNOWN:
        raise ValueError(f"not statuses of an execution: {chosen}")
    if len(chosen) == 1:
        return f"status = '{chosen[0]}'"
    return "status IN (" + ", ".join(f"'{status}'" for status in chosen) + ")"


#: runs a worker holds, which the lost-run watch reads by heartbeat
ACTIVE_RUNS = status_in(ACTIVE)
#: runs no worker took yet, which the outbox reads by when they were sent
TRIGGERED_RUNS = status_in([Status.TRIGGERED.value])
#: runs that ended, which retention reads by when they ended
FINISHED_RUNS = status_in(TERMINAL)
