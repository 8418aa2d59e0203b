"""Checkpoints: what a run carries past each finished phase, kept in the store, so that a run
resumes after its last finished phase: on a loader (the hand-over at LOAD), or on another worker
after its own was lost."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from procexec.engine.context import DataUpdates
from procexec.engine.domain import PhaseStatus
from procexec.engine.store.base import ExecutionStore

#: the largest checkpoint kept (a pickled phase result and what the run carries with it)
MAX_CHECKPOINT_BYTES = 4 * 1024 * 1024


@dataclass
class Carried:
    """What a run carries from a phase to the next, kept in each checkpoint: the phase's
    result, the data it reported updated so far, and the warnings counted so far. A run resumed
    from a checkpoint (on a loader, or after its worker was lost) ends as it would have."""

    result: Any
    series: dict[str, list[str]] = field(default_factory=dict)
    curves: dict[str, list[str]] = field(default_factory=dict)
    loader_message: str | None = None
    warnings: int = 0

    @classmethod
    def of(cls, result: Any, updates: DataUpdates, warnings: int) -> Carried:
        return cls(result, updates.series, updates.curves, updates.loader_message, warnings)

    def updates(self) -> DataUpdates:
        updates = DataUpdates()
        updates.series, updates.curves = self.series, self.curves
        updates.loader_message = self.loader_message
        return updates


def resume_point(store: ExecutionStore, doc: dict[str, Any], phases: int) -> tuple[int, Carried]:
    """The first phase to run of a run of `phases` phases, and what it takes: after the last
    checkpoint that follows a run of successful phases; from the start without one."""
    done = 0
    for phase in doc.get("phases") or []:
        if phase.get("status") != PhaseStatus.SUCCESS.value:
            break
        done += 1
    if done == 0:
        return 0, Carried(None)
    checkpoint = store.load_checkpoint(doc["_id"], done - 1)
    if checkpoint is None or checkpoint[0] != done - 1 or done > phases:
        return 0, Carried(None)
    kept = pickle.loads(checkpoint[1])
    # a checkpoint of an earlier version holds the result alone
    return done, kept if isinstance(kept, Carried) else Carried(kept)


def pack(carried: Carried) -> bytes | None:
    """What a finished phase hands on, as its checkpoint; None where it cannot be kept (not
    picklable, or larger than `MAX_CHECKPOINT_BYTES`): a recovered run then starts again from
    the first phase, and LOAD runs where SEND ran."""
    try:
        blob = pickle.dumps(carried)
    except Exception:
        return None
    return blob if len(blob) <= MAX_CHECKPOINT_BYTES else None
