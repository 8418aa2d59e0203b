"""Writes a running execution into its document: phases and status at once, log lines batched.

Log lines are buffered and flushed every `flush_interval` seconds by the process's recording
thread (`engine.flusher`), and before every status change, so readers see them in order while
the run goes on, without one store write per line. The same thread sends the run's heartbeat
and watches its deadline.

Every write is fenced: it applies only while the run is still active and still held by this
worker's claim (its token). When a write is refused, the run was cancelled, timed out or taken
away as lost, and the recorder aborts the run's `RunControl`.

Each phase keeps at most `max_log_lines` lines: its first half and its latest lines, with one
marker line between them that counts what was dropped, so no document nears MongoDB's 16 MB.
Lines are appended (`push`, one atomic update with the run's other changes) while the first
half fills, each push limited to `max_log_lines` in the store as a backstop; past it, the log
is written whole (head, marker, tail) in one `set`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from procexec.engine.control import RunControl
from procexec.engine.domain import ACTIVE, TERMINAL, PhaseStatus
from procexec.engine.flusher import FLUSHER
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.timeutil import iso_ms, log_line

logger = logging.getLogger(__name__)

#: the pause between two flushes is at least this many times the last flush's duration
WRITE_SHARE = 4


#: the marker line of a capped log (after its timestamp), with the count of dropped lines
_MARKER = re.compile(r"^\S+ warning \.\.\. (\d+) log lines dropped: a phase keeps its first ")


class _PhaseLog:
    """One phase's log lines as kept: a head, and once over the cap, a marker and a tail."""

    def __init__(self, max_lines: int, existing: Sequence[str] = ()) -> None:
        self.head_size = max(1, max_lines // 2)
        self.tail: deque[str] = deque(maxlen=max(1, max_lines - self.head_size - 1))
        self.head: list[str] = list(existing[: self.head_size])
        rest = list(existing[self.head_size :])
        self.dropped = 0
        # A resumed phase's log may be capped already: carry its count on, not its marker.
        marker = _MARKER.match(rest[0]) if rest else None
        if marker:
            self.dropped = int(marker[1])
            rest = rest[1:]
        overflow = max(0, len(rest) - (self.tail.maxlen or 0))
        self.dropped += overflow
        self.tail.extend(rest)
        self.pending: list[str] = []
        #: every line added since the last write, for the change journal
        self.fresh: list[str] = []
        #: the head is full: the stored log is rewritten whole (head, marker, tail) on flush
        self.rewrite = overflow > 0

    def add(self, line: str) -> None:
        self.fresh.append(line)
        if len(self.head) < self.head_size and not self.rewrite:
            self.head.append(line)
            self.pending.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.dropped += 1
        self.tail.append(line)
        self.rewrite = True

    def lines(self) -> list[str]:
        marker = []
        if self.dropped:
            marker = [
                log_line(
                    "warning",
                    f"... {self.dropped} log lines dropped: a phase keeps its first "
                    f"{self.head_size} and its last {self.tail.maxlen} lines ...",
                )
            ]
        return [*self.head, *marker, *self.tail]


class ExecutionRecorder:
    def __init__(
        self,
        store: ExecutionStore,
        execution_id: str,
        *,
        flush_interval: float,
        token: str | None = None,
        control: RunControl | None = None,
        heartbeat_interval: float = 5.0,
        max_log_lines: int = 1000,
        phases: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.flush_interval = flush_interval
        self.token = token
        self.control = control or RunControl()
        self.heartbeat_interval = heartbeat_interval
        self.max_log_lines = max_log_lines
        self.phase_names = [str(phase["name"]) for phase in phases]
        self._logs = {
            index: _PhaseLog(max_log_lines, phase.get("log") or [])
            for index, phase in enumerate(phases)
        }
        #: monotonic time after which `on_deadline` is called once (a timeout)
        self.deadline: float | None = None
        self.on_deadline: Callable[[], None] | None = None
        #: the run's final status is written (its heartbeat stops)
        self.ended = False
        #: a finished phase's fields and checkpoint, written with the next write
        self._staged: dict[str, Any] = {}
        self._staged_checkpoints: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        #: held by the flusher's round; `_closed` once the run's recording ends
        self._tick_lock = threading.Lock()
        self._closed = False
        self._next_flush = self._next_beat = 0.0

    @property
    def phase_count(self) -> int:
        return len(self.phase_names)

    def __enter__(self) -> ExecutionRecorder:
        now = time.monotonic()
        self._next_flush = now + self.flush_interval
        self._next_beat = now + self.heartbeat_interval
        FLUSHER.add(self, min(self._next_flush, self._next_beat))
        return self

    def __exit__(self, *exc: object) -> None:
        with self._tick_lock:  # the flusher is done with it before the last flush
            self._closed = True
            FLUSHER.remove(self)
        if not self.control.aborted:
            self.flush()

    def tick(self, now: float) -> float:
        """The flusher's round (`engine.flusher`): watch the deadline, flush when due (less
        often for a run whose writes grow costly, a long log rewritten whole: its writes take
        at most a fifth of its time), heartbeat when due; the time of the next round due."""
        with self._tick_lock:
            if self._closed:
                return now + self.flush_interval
            self._watch_deadline()
            if now >= self._next_flush:
                pause = self.flush_interval
                if not self.control.aborted:
                    self.flush()
                    pause = max(pause, WRITE_SHARE * (time.monotonic() - now))
                self._next_flush = time.monotonic() + pause
            if now >= self._next_beat:
                self._next_beat = now + self.heartbeat_interval
                self.heartbeat()
            return min(self._next_flush, self._next_beat)

    def _watch_deadline(self) -> None:
        deadline, callback = self.deadline, self.on_deadline
        if deadline is not None and callback is not None and time.monotonic() >= deadline:
            self.deadline = None
            callback()

    def heartbeat(self) -> bool:
        """Tell the store this worker still holds the run; False if it does not any more."""
        with self._write_lock:  # never after the final status, which another thread may write
            if self.control.aborted:
                return False
            if self.ended:  # its final status is written: nothing more to hold
                return True
            return self._apply(Update(meta={"heartbeat": iso_ms()}))

    def _apply(self, change: Update) -> bool:
        change = dataclasses.replace(change, expect_status=ACTIVE, expect_worker=self.token)
        if self.store.update(self.execution_id, change):
            return True
        self._taken_away()
        return False

    def _taken_away(self) -> None:
        doc = self.store.get(self.execution_id)
        reason = (doc or {}).get("message") or "the run is no longer held by this worker"
        logger.warning("execution %s stopped on this worker: %s", self.execution_id, reason)
        self.control.abort(str(reason))

    def log(self, phase_index: int, line: str) -> None:
        with self._lock:
            log = self._logs.get(phase_index)
            if log is None:
                log = self._logs[phase_index] = _PhaseLog(self.max_log_lines)
            log.add(line)

    def _take_pending(
        self,
    ) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, list[str]]]:
        """The log's writes (whole logs to set, lines to push), and the lines new to each."""
        sets: dict[str, Any] = {}
        pushes: dict[str, list[str]] = {}
        fresh: dict[str, list[str]] = {}
        with self._lock:
            for index, log in self._logs.items():
                if log.rewrite:
                    sets[f"phases.{index}.log"] = log.lines()
                    log.rewrite = False
                    log.pending = []
                elif log.pending:
                    pushes[f"phases.{index}.log"] = log.pending
                    log.pending = []
                if log.fresh:
                    fresh[str(index)], log.fresh = log.fresh, []
        return sets, pushes, fresh

    def _restore(self, pushes: Mapping[str, list[str]], fresh: Mapping[str, list[str]]) -> None:
        with self._lock:
            for path, lines in pushes.items():
                log = self._logs[int(path.split(".")[1])]
                log.pending = lines + log.pending
            for index, lines in fresh.items():
                log = self._logs[int(index)]
                log.fresh = lines + log.fresh

    def _write(self, *, set: Mapping[str, Any] | None = None) -> bool:
        """One write of everything waiting: the log's lines, the phases staged by `end_phase`
        and `start_phase` (with their checkpoints), then `set`."""
        with self._write_lock:
            log_sets, pushes, fresh = self._take_pending()
            staged, checkpoints = self._staged, self._staged_checkpoints
            fields = {**staged, **(set or {})}
            if not pushes and not log_sets and not fields:
                return True
            # the journal records the lines new to each log, never a whole log set again
            note: dict[str, Any] = {"set": fields} if fields else {}
            if fresh:
                note["lines"] = fresh
            sets, appended = {**log_sets, **fields}, dict(pushes)
            for path, entry in fields.items():  # a phase begun in this write holds its lines
                if isinstance(entry, dict) and re.fullmatch(r"phases\.\d+", path):
                    lines = sets.pop(f"{path}.log", None) or appended.pop(f"{path}.log", None)
                    if lines:
                        sets[path] = {**entry, "log": [*entry.get("log", []), *lines]}
            try:
                done = self._apply(
                    Update(
                        set=sets,
                        push=appended,
                        # a backstop: the log arrays stay bounded in the store even if lines
                        # are pushed twice (a write applied, then reported failed, sent again)
                        push_limit=dict.fromkeys(appended, self.max_log_lines),
                        checkpoints=tuple(checkpoints),
                        note=note,
                    )
                )
            except Exception:
                self._restore(pushes, fresh)
                raise
            self._staged, self._staged_checkpoints = {}, []
            if done and fields.get("status") in TERMINAL:
                self.ended = True
            return done

    def flush(self) -> bool:
        """Write the buffered log lines now."""
        return self._write()

    def set(self, **fields: Any) -> bool:
        """Set top-level fields, after the buffered log lines."""
        return self._write(set=fields)

    def fail(self, message: str, phase_message: str) -> bool:
        """Fail the run and every phase still running (a timeout), from any thread."""
        self.flush()  # its own write: MongoDB refuses a log push beside an array-filter update
        with self._write_lock:
            return self._apply(
                Update(
                    set={"status": "failed", "message": message, "end": iso_ms()},
                    fail_running_phases=phase_message,
                )
            )

    def start_phase(self, name: str, message: str, status: str = "running") -> int:
        """Begin phase `name`: a new `running` entry, or the existing one of a resumed run.

        Staged with the end of the phase before it (`end_phase`) and written with the next
        write: the next flush (within `flush_interval`), or the run's next status change or
        end, whichever comes first; a run of short phases writes its boundaries together. The
        phase begins only while the run is still held by this claim (a read, no write): one
        cancelled or taken away meanwhile begins no other phase."""
        self._check_held()
        fields: dict[str, Any] = {"status": status, "message": message}
        if name in self.phase_names:
            index = self.phase_names.index(name)
            fields[f"phases.{index}.status"] = PhaseStatus.RUNNING.value
            fields[f"phases.{index}.message"] = message
        else:
            index = self.phase_count
            with self._lock:  # a line logged at once has its phase
                self._logs.setdefault(index, _PhaseLog(self.max_log_lines))
            # set at its index, not pushed: MongoDB refuses a push to `phases` beside a change
            # to one of its entries (the phase before, ending in the same write)
            fields[f"phases.{index}"] = new_phase(name, message)
            self.phase_names.append(name)
        with self._write_lock:
            self._staged.update(fields)
        self.control.check()
        return index

    def _check_held(self) -> None:
        """Abort the run's control if the store says it is not held by this claim any more."""
        if self.control.aborted or self.token is None:
            return
        status, worker = self.store.holder(self.execution_id)
        if status not in ACTIVE or worker != self.token:
            self._taken_away()

    def set_phase(self, index: int, **fields: Any) -> bool:
        return self._write(set={f"phases.{index}.{key}": value for key, value in fields.items()})

    def end_phase(
        self,
        index: int,
        status: PhaseStatus,
        message: str,
        checkpoint: bytes | None = None,
    ) -> None:
        """End a phase, with what it hands on (`checkpoint`): staged, and written with the
        next write (the next phase's start, the run's end, or the next flush), in the same
        store transaction, so that a finished phase is never seen without its checkpoint."""
        fields = {"status": status.value, "message": message, "end": iso_ms()}
        with self._write_lock:
            self._staged.update({f"phases.{index}.{key}": value for key, value in fields.items()})
            if checkpoint is not None:
                self._staged_checkpoints.append((index, checkpoint))


def new_phase(name: str, message: str) -> dict[str, Any]:
    """A phase's entry as it begins."""
    return {
        "name": name,
        "start": iso_ms(),
        "status": PhaseStatus.RUNNING.value,
        "message": message,
        "log": [],
    }
