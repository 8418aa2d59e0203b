"""The MongoDB store's side collections of a run: its checkpoints, one per finished phase
(`checkpoints`), and its change journal (`changes`), each keyed `<run id>/<number>` with the
run's id in `run`; and the step that brings checkpoints kept by an earlier version (one per run,
keyed by the run's id alone) up to that form."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from procexec.engine.store.changes import JournalRow

#: the migration's mark in the `migrations` collection
_MIGRATION = "checkpoints-by-phase"
#: the counter of places in the journal of every run, in the `places` collection
_PLACES = "journal"


def save_checkpoint(
    checkpoints: Collection[Any], execution_id: str, phase: int, blob: bytes
) -> None:
    # `$set`, not a replacement: a checkpoint saved again keeps its run's `ended` date
    checkpoints.update_one(
        {"_id": f"{execution_id}/{phase}"},
        {"$set": {"run": execution_id, "phase": phase, "blob": blob}},
        upsert=True,
    )


def date_if_ended(
    executions: Collection[Any], checkpoints: Collection[Any], execution_id: str, phase: int
) -> None:
    """A checkpoint saved after its run ended (by a worker that lost the run) takes the run's
    date, so that it expires with it."""
    run = executions.find_one({"_id": execution_id}, {"_meta.ended": 1})
    ended = ((run or {}).get("_meta") or {}).get("ended")
    if ended is not None:
        checkpoints.update_one({"_id": f"{execution_id}/{phase}"}, {"$set": {"ended": ended}})


def load_checkpoint(
    checkpoints: Collection[Any], execution_id: str, phase: int | None = None
) -> tuple[int, bytes] | None:
    selector: dict[str, Any] = {"run": execution_id}
    if phase is not None:
        selector["phase"] = phase
    rows = list(checkpoints.find(selector).sort("phase", DESCENDING).limit(1))
    return (int(rows[0]["phase"]), bytes(rows[0]["blob"])) if rows else None


def next_place(places: Collection[Any]) -> int:
    """The next place in the journal of every run (a counter, raised atomically)."""
    found: Any = places.find_one_and_update(
        {"_id": _PLACES}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    return int(found["n"])


def journal_head(places: Collection[Any]) -> int:
    """The last place handed out (its entry may still be on its way)."""
    found = places.find_one({"_id": _PLACES})
    return int(found["n"]) if found else 0


def journal_since(
    changes: Collection[Any], executions: Collection[Any], after: int, limit: int
) -> list[JournalRow]:
    """The journal of every run after the place `after`, in order of place, each entry with
    its run's current name, status, message and phases."""
    rows = list(changes.find({"pos": {"$gt": after}}).sort("pos", 1).limit(limit))
    ids = list({row["run"] for row in rows})
    fields = {"name": 1, "status": 1, "message": 1, "phases.name": 1, "phases.status": 1}
    docs = {doc["_id"]: doc for doc in executions.find({"_id": {"$in": ids}}, fields)}
    return [
        JournalRow(int(row["pos"]), row["run"], int(row["seq"]), dict(row["change"]), doc)
        for row in rows
        if (doc := docs.get(row["run"])) is not None
    ]


def journal(
    changes: Collection[Any],
    execution_id: str,
    seq: int,
    entry: Mapping[str, Any],
    ended: datetime | None,
    pos: int | None = None,
) -> None:
    """Record one change of a run under its sequence number (dated when it ends the run), at
    its place `pos` in the journal of every run."""
    row: dict[str, Any] = {"_id": f"{execution_id}/{seq}", "run": execution_id, "seq": seq}
    if pos is not None:
        row["pos"] = pos
    row["change"] = dict(entry)
    if ended is not None:
        row["ended"] = ended
    with contextlib.suppress(DuplicateKeyError):  # recorded by an earlier attempt
        changes.insert_one(row)


def read_changes(
    changes: Collection[Any], execution_id: str, after: int
) -> list[tuple[int, dict[str, Any]]]:
    rows = changes.find({"run": execution_id, "seq": {"$gt": after}}).sort("seq", 1)
    return [(int(row["seq"]), dict(row["change"])) for row in rows]


def migrate_checkpoints(checkpoints: Collection[Any], migrations: Collection[Any]) -> None:
    """Checkpoints kept by an earlier version (`_id` the run's id, no `run`) take the form of
    one per phase; the old ones are removed once copied. Done once per database."""
    if migrations.find_one({"_id": _MIGRATION}) is not None:
        return
    for old in list(checkpoints.find({"run": {"$exists": False}})):
        run, phase = str(old["_id"]), int(old["phase"])
        new = {key: value for key, value in old.items() if key != "_id"}
        new.update({"run": run, "phase": phase})
        checkpoints.update_one({"_id": f"{run}/{phase}"}, {"$setOnInsert": new}, upsert=True)
        checkpoints.delete_one({"_id": old["_id"], "run": {"$exists": False}})
    migrations.update_one({"_id": _MIGRATION}, {"$set": {"done": True}}, upsert=True)
