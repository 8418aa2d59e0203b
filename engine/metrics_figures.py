"""The figures of `/metrics` that come from the store, the same whichever API process is asked:
runs by process and status, runs waiting for a worker and for a concurrency slot, and the fire
times each schedule skipped.

Each is read from what the store keeps counted already: runs by status per process from the
counters (`_aggregate` groups answered from them, one per process the registry knows), the
runs parked for a slot from the slots' index (`waiting_scopes`), the skipped fire times from
the processes' state. A read is kept `CACHE_SECONDS`, so that scrapes, however many, cost the
store one read of each at most that often.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from procexec.engine.domain import DEFAULT_ENVIRONMENT, Status
from procexec.engine.query.params import parse_query
from procexec.engine.store import ExecutionStore

#: seconds a reading of the store is served again
CACHE_SECONDS = 5.0
_BY_STATUS = json.dumps([{"$group": {"_id": "$status", "count": {"$sum": 1}}}])


@dataclass(frozen=True)
class StoreFigures:
    """One reading of the store's figures, in one environment."""

    environment: str
    #: runs by (process, status)
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: runs triggered and parked until a concurrency slot is free (every environment)
    waiting_for_slot: int = 0
    #: fire times skipped in all, by process
    skipped: dict[str, int] = field(default_factory=dict)

    def by_status(self, status: Status) -> int:
        return sum(n for (_, state), n in self.runs.items() if state == status.value)

    @property
    def waiting_for_worker(self) -> int:
        """Triggered runs no worker has claimed, but for those parked for a slot."""
        return max(0, self.by_status(Status.TRIGGERED) - self.waiting_for_slot)


def read_figures(
    store: ExecutionStore, names: Iterable[str], environment: str = DEFAULT_ENVIRONMENT
) -> StoreFigures:
    """Read the figures: a counted group per process, the parked runs, the processes' state."""
    runs: dict[tuple[str, str], int] = {}
    for name in sorted(set(names)):
        query = parse_query([("name", name), ("_aggregate", _BY_STATUS)], environment)
        for row in store.aggregate(query):
            if isinstance(row.get("_id"), str):
                runs[(name, row["_id"])] = int(row.get("count") or 0)
    states = store.process_states()
    return StoreFigures(
        environment=environment,
        runs=runs,
        waiting_for_slot=sum(store.waiting_scopes().values()),
        skipped={name: state.missed for name, state in states.items()},
    )


class CachedFigures:
    """`read_figures`, read again at most every `cache_seconds`, one reader at a time."""

    def __init__(
        self,
        store: ExecutionStore,
        *,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._read: tuple[float, StoreFigures] | None = None

    def get(self, names: Iterable[str]) -> StoreFigures:
        with self._lock:
            now = time.monotonic()
            if self._read is None or now - self._read[0] >= self.cache_seconds:
                self._read = (now, read_figures(self.store, names))
            return self._read[1]
