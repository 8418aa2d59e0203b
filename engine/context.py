"""What a phase function sees: its parameters, a log, a message, and a record of updated data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from procexec.engine.control import RunControl
from procexec.engine.recorder import ExecutionRecorder
from procexec.engine.store.base import ExecutionStore, Observation
from procexec.engine.timeutil import log_line

LEVELS = ("debug", "info", "warning", "error")


class DataUpdates:
    """The series and curves a run updated, by date, in the order they were first reported."""

    def __init__(self) -> None:
        self.series: dict[str, list[str]] = {}
        self.curves: dict[str, list[str]] = {}
        self.loader_message: str | None = None

    @staticmethod
    def _add(target: dict[str, list[str]], date: str, ids: Iterable[str]) -> None:
        bucket = target.setdefault(date, [])
        seen = set(bucket)
        for item in ids:
            if item not in seen:
                bucket.append(item)
                seen.add(item)

    def add_series(self, date: str, ids: Iterable[str]) -> None:
        self._add(self.series, date, ids)

    def add_curves(self, date: str, ids: Iterable[str]) -> None:
        self._add(self.curves, date, ids)

    def __bool__(self) -> bool:
        return bool(self.series or self.curves)

    def as_document(self) -> dict[str, Any]:
        return {"curves": self.curves, "series": self.series}


class PhaseContext:
    """The context handed to each phase function of a run."""

    def __init__(
        self,
        *,
        execution: Mapping[str, Any],
        phase: str,
        phase_index: int,
        params: Any,
        recorder: ExecutionRecorder,
        store: ExecutionStore,
        updates: DataUpdates,
        control: RunControl | None = None,
        attempt: int = 1,
        service_keys: Mapping[str, Any] | None = None,
    ) -> None:
        self.execution_id: str = execution["_id"]
        self.process: str = execution["name"]
        self.environment: str = execution["environment"]
        self.run_as: str = execution.get("runAs", "")
        self.trigger: str = execution.get("trigger", "")
        self.phase = phase
        #: the run's parameters: the process's model (`params=`), or a dict (`defaults=`)
        self.params: Any = params if isinstance(params, BaseModel) else dict(params)
        keys = service_keys or {}
        #: a subscription run's fulfilled subscription (`{"series": {date: [ids]}, …}`)
        self.subscription: dict[str, Any] | None = keys.get("subscription")
        #: the run that caused this one (`{"_id", "name", "status"}`), for a follower or
        #: subscription run
        self.upstream: dict[str, Any] | None = keys.get("upstream")
        self.updates = updates
        self.warnings = 0
        #: 1 for the first attempt of this phase, 2 for its first retry, …
        self.attempt = attempt
        self._control = control or RunControl()
        self._index = phase_index
        self._recorder = recorder
        self._store = store

    def log(self, text: str, level: str = "info") -> None:
        """Append a line to this phase's log, stamped like the platform's."""
        self._control.check()
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
        if level == "warning":
            self.warnings += 1
        self._recorder.log(self._index, log_line(level, text))

    def check(self) -> None:
        """Stop here (raise `RunAborted`) if the run was cancelled or timed out."""
        self._control.check()

    def sleep(self, seconds: float) -> None:
        """Sleep, but stop at once if the run is cancelled or times out meanwhile."""
        self._control.sleep(seconds)

    def debug(self, text: str) -> None:
        self.log(text, "debug")

    def info(self, text: str) -> None:
        self.log(text, "info")

    def warning(self, text: str) -> None:
        self.log(text, "warning")

    def error(self, text: str) -> None:
        self.log(text, "error")

    def message(self, text: str) -> None:
        """Set this phase's current information message (readers see it at once)."""
        self._recorder.set_phase(self._index, message=text)

    def series_updated(self, date: str, ids: Iterable[str]) -> None:
        """Record that the run updated these series ids for `date` (goes to `data.series`)."""
        self.updates.add_series(date, ids)

    def curves_updated(self, date: str, ids: Iterable[str]) -> None:
        """Record that the run updated these curve ids for `date` (goes to `data.curves`)."""
        self.updates.add_curves(date, ids)

    def loader_message(self, text: str) -> None:
        """Set the run's `loaderMessage`; it also closes this phase's log, as the loader's."""
        self.updates.loader_message = text

    def load_series(self, observations: Iterable[Observation]) -> int:
        """Upsert series values into the store and record their ids as updated."""
        rows = list(observations)
        written = self._store.upsert_observations(self.environment, rows)
        for row in rows:
            self.updates.add_series(row.date, [row.series_id])
        return written

    def series(self, series_id: str) -> dict[str, float]:
        """The stored values of one series, by date."""
        return self._store.get_series(self.environment, series_id)
