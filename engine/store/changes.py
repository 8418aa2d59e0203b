"""A change to one execution document, as MongoDB expresses it, and how a store that keeps
the document whole (SQLite) applies it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Update:
    """A change to one document, as MongoDB expresses it.

    `set` maps dotted paths (`phases.2.status`) to values; `push` maps dotted paths of arrays
    to values appended in order, and `push_limit` some of those paths to the most items their
    array keeps after the push: its first ones (MongoDB's `$slice`), a backstop that keeps an
    array bounded in the store whatever its writer does. `expect_status` and `expect_worker`,
    when given, make the update conditional: it applies only while the document has one of
    those statuses and is held by that worker claim (its fencing token), atomically.
    `fail_running_phases` marks every phase still `running` as `failed` with that message
    (cancellation, a lost worker, a timeout).

    Every change to a document raises its sequence number by one and is recorded under that
    number in the run's change journal (`ExecutionStore.changes`), in the same write: a
    follower resumes from the last number it saw.
    """

    set: Mapping[str, Any] | None = None
    push: Mapping[str, Sequence[Any]] | None = None
    push_limit: Mapping[str, int] | None = None
    expect_status: frozenset[str] | None = None
    expect_worker: str | None = None
    meta: Mapping[str, Any] | None = None
    fail_running_phases: str | None = None
    #: finished phases' checkpoints, kept in the same write: (phase index, blob) each
    checkpoints: Sequence[tuple[int, bytes]] = ()
    #: applies only while the document's sequence number is still this one (as its writer read)
    expect_seq: int | None = None
    #: what the run's change journal records of this change; its `set` and `push` by default
    note: Mapping[str, Any] | None = None

    @property
    def changes_document(self) -> bool:
        """Whether the change touches the document (else bookkeeping only: a heartbeat)."""
        return bool(self.set or self.push or self.fail_running_phases is not None)

    def journal(self) -> dict[str, Any]:
        """The entry of the change journal that records this change."""
        if self.note is not None:
            return dict(self.note)
        entry: dict[str, Any] = {}
        if self.set:
            entry["set"] = dict(self.set)
        if self.push:
            entry["push"] = {path: list(values) for path, values in self.push.items()}
        if self.fail_running_phases is not None:
            entry["failRunning"] = self.fail_running_phases
        return entry


@dataclass(frozen=True)
class JournalRow:
    """One entry of the journal of every run (`ExecutionStore.journal_since`): its place in
    that journal, its run and the run's sequence number, the entry, and the run's document as
    it is now (its `name`, `status`, `message` and `phases` at least)."""

    pos: int
    execution_id: str
    seq: int
    entry: dict[str, Any]
    doc: dict[str, Any]


def apply_update(doc: dict[str, Any], change: Update) -> None:
    """Apply `change` to a document in memory, as MongoDB would; used by stores without `$set`."""
    if change.fail_running_phases is not None:
        for phase in doc.get("phases", []):
            if phase.get("status") == "running":
                phase["status"] = "failed"
                phase["message"] = change.fail_running_phases
                if "end" in (change.set or {}):
                    phase["end"] = change.set["end"]  # type: ignore[index]
    for path, value in (change.set or {}).items():
        parent, key = _walk(doc, path, create=True)
        _assign(parent, key, value)
    for path, values in (change.push or {}).items():
        parent, key = _walk(doc, path, create=True)
        target = parent[int(key)] if isinstance(parent, list) else parent.setdefault(key, [])
        if not isinstance(target, list):
            raise TypeError(f"cannot push to non-array field {path!r}")
        target.extend(values)
        limit = (change.push_limit or {}).get(path)
        if limit is not None:
            del target[limit:]


def _walk(doc: dict[str, Any], path: str, *, create: bool) -> tuple[Any, str]:
    parts = path.split(".")
    node: Any = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if part not in node and create:
                node[part] = {}
            node = node[part]
    return node, parts[-1]


def _assign(parent: Any, key: str, value: Any) -> None:
    if isinstance(parent, list):
        index = int(key)
        if index == len(parent):
            parent.append(value)
        else:
            parent[index] = value
    else:
        parent[key] = value
