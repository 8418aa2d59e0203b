"""A run's change journal (`ExecutionStore.changes`) told as events for its followers: status
changes, phases begun and ended, and log lines, in the order they were written.

Each journal entry becomes one or more events, all numbered by the entry's sequence number:
the last of them carries the number alone (`12`), the ones before it the number and their
place (`12.1`, `12.2`), so a follower that lost its connection in the middle of an entry
resumes at the next event, and one that saw the entry whole at the next entry.

Logs keep the cap of the stored document (`engine.recorder`): a phase's first half of
`max_log_lines` lines is told as it comes; past it only its latest lines are kept, and when
the phase ends (or the run does) the marker line that counts the dropped ones is told once,
then those latest lines. So a follower sees what the stored log holds, each line once, even
though the journal records every line logged.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from procexec.engine.domain import TERMINAL, Status
from procexec.engine.timeutil import log_line

_PHASE = re.compile(r"^phases\.(\d+)$")
_PHASE_FIELD = re.compile(r"^phases\.(\d+)\.(name|start|status|message|end)$")
_PHASE_ENDED = frozenset({*TERMINAL, "cancelled"})


@dataclass(frozen=True)
class Event:
    seq: int
    #: its place among the events of its entry: 0 for the last, else 1, 2, … in order
    part: int
    kind: str  # status | phase | log | end
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.seq) if self.part == 0 else f"{self.seq}.{self.part}"

    @property
    def cursor(self) -> tuple[int, float]:
        return (self.seq, float("inf") if self.part == 0 else self.part)


_CURSOR = re.compile(r"^\s*(\d{1,18})(?:\.(\d{1,4}))?\s*$")


def parse_cursor(value: str | None) -> tuple[int, float]:
    """The position a `Last-Event-ID` names (`12` or `12.3`; none when empty); ValueError when
    it names none."""
    if value is None or not value.strip():
        return (-1, float("inf"))
    found = _CURSOR.match(value)
    if found is None:
        raise ValueError(f"'{value[:40]}' is not an event id")
    return (int(found[1]), float(found[2]) if found[2] else float("inf"))


@dataclass
class _Log:
    head_size: int
    tail_size: int
    told: int = 0
    tail: deque[str] = field(default_factory=deque)
    dropped: int = 0
    flushed: bool = False


class RunEvents:
    """The events of one run, fed its journal entries in order (`feed`)."""

    def __init__(self, max_log_lines: int) -> None:
        self.head_size = max(1, max_log_lines // 2)
        self.tail_size = max(1, max_log_lines - self.head_size - 1)
        self.status: str | None = None
        self.message: str | None = None
        self.end: str | None = None
        self.ended = False
        self.seq = 0
        self._phases: dict[int, dict[str, Any]] = {}
        self._logs: dict[int, _Log] = {}

    def opening(self, doc: dict[str, Any], seq: int) -> list[Event]:
        """The event of a document read at `seq` before any journal entry is fed: its status."""
        self.status, self.message = doc.get("status"), doc.get("message")
        self.end = doc.get("end")
        for index, phase in enumerate(doc.get("phases") or []):
            self._phases[index] = {key: phase.get(key) for key in ("name", "status", "message")}
        self.seq = seq
        if self.status in TERMINAL:  # told by `closing`
            return []
        return [Event(seq, 0, "status", {"status": self.status, "message": self.message})]

    def closing(self, doc: dict[str, Any], seq: int) -> list[Event]:
        """The end of a run whose document is terminal though its journal did not say so (one
        stored before the journal was kept)."""
        if self.ended or doc.get("status") not in TERMINAL:
            return []
        self.status, self.message, self.end = doc["status"], doc.get("message"), doc.get("end")
        return self._numbered(max(seq, self.seq), self._ending())

    def feed(self, seq: int, entry: dict[str, Any]) -> list[Event]:
        """The events of the journal entry `seq`."""
        if self.ended or seq <= self.seq:
            return []
        self.seq = seq
        sets: dict[str, Any] = dict(entry.get("set") or {})
        begun: dict[int, dict[str, Any]] = {}
        for value in (entry.get("push") or {}).get("phases") or []:
            begun[len(self._phases) + len(begun)] = dict(value)
        changed: dict[int, dict[str, Any]] = {}
        for path, value in sets.items():
            whole = _PHASE.match(path)
            if whole and isinstance(value, dict):
                begun[int(whole[1])] = dict(value)
                continue
            part = _PHASE_FIELD.match(path)
            if part:
                changed.setdefault(int(part[1]), {})[part[2]] = value
        if "failRunning" in entry:
            for index, phase in self._phases.items():
                if phase.get("status") == "running" and index not in changed:
                    changed[index] = {"status": "failed", "message": entry["failRunning"]}
        lines = {int(index): list(values) for index, values in (entry.get("lines") or {}).items()}
        events: list[tuple[str, dict[str, Any]]] = []
        for index in sorted({*begun, *changed, *lines}):
            if index in begun:
                phase = {k: begun[index].get(k) for k in ("name", "start", "status", "message")}
                self._phases[index] = dict(phase)
                events.append(("phase", {"index": index, **phase}))
            events.extend(self._lines(index, lines.get(index, ())))
            if index in changed:
                phase = self._phases.setdefault(index, {})
                phase.update(changed[index])
                events.append(("phase", {"index": index, **phase, **changed[index]}))
                if phase.get("status") in _PHASE_ENDED:
                    events.extend(self._flush(index))
        if "status" in sets or "message" in sets:
            # a journal that starts at the run's first change (no `opening`): it was recorded
            # `triggered`, as every run is, until a change says otherwise
            self.status = sets.get("status", self.status or Status.TRIGGERED.value)
            self.message = sets.get("message", self.message)
            self.end = sets.get("end", self.end)
            if self.status in TERMINAL:
                events.extend(self._ending())
            else:
                events.append(("status", {"status": self.status, "message": self.message}))
        return self._numbered(seq, events)

    def _lines(self, index: int, lines: Any) -> list[tuple[str, dict[str, Any]]]:
        log = self._logs.setdefault(index, _Log(self.head_size, self.tail_size))
        told: list[str] = []
        for line in lines:
            if log.told < log.head_size and not log.tail:
                told.append(line)
                log.told += 1
            else:
                log.tail.append(line)
                if len(log.tail) > log.tail_size:
                    log.tail.popleft()
                    log.dropped += 1
        return [("log", {"phase": index, "lines": told})] if told else []

    def _flush(self, index: int) -> list[tuple[str, dict[str, Any]]]:
        """A phase's latest lines past its head, once it ended: the marker, then those lines."""
        log = self._logs.get(index)
        if log is None or log.flushed or not log.tail:
            return []
        log.flushed = True
        lines = list(log.tail)
        if log.dropped:
            marker = (
                f"... {log.dropped} log lines dropped: a phase keeps its first "
                f"{log.head_size} and its last {log.tail_size} lines ..."
            )
            lines.insert(0, log_line("warning", marker))
        return [("log", {"phase": index, "lines": lines})]

    def _ending(self) -> list[tuple[str, dict[str, Any]]]:
        self.ended = True
        events = [event for index in sorted(self._logs) for event in self._flush(index)]
        final = {"status": self.status, "message": self.message, "end": self.end}
        return [*events, ("status", final), ("end", final)]

    @staticmethod
    def _numbered(seq: int, events: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        count = len(events)
        return [
            Event(seq, 0 if place == count else place, kind, data)
            for place, (kind, data) in enumerate(events, start=1)
        ]
