"""Retention on the MongoDB store: TTL indexes on when a finished run finished.

The documents keep their times as ISO strings, which a TTL index cannot read: a run that reaches
a finished status (`TERMINAL`) also gets `_meta.ended`, a BSON date (its `end`; the moment of the
update when it sets none), in the same update that sets the status, and a run set back to an
active status loses it. Its checkpoint gets the same date (`ended`) right after. A TTL index on
each (`TTL_INDEX`) lets the server delete them once the retention has passed; `keep_for` makes
or changes (`collMod`) or drops those indexes at start-up. `purge` is the housekeeping's
backstop, for what the server's TTL monitor (once a minute) has not deleted yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from procexec.engine.domain import TERMINAL
from procexec.engine.store.base import Update
from procexec.engine.timeutil import parse_iso

#: when a finished run finished, as a date: a key of the hidden `_meta`, and its path
META_ENDED = "ended"
ENDED = f"_meta.{META_ENDED}"
#: the same date on a checkpoint
CHECKPOINT_ENDED = "ended"
#: the name of the TTL index, on `executions` and on `checkpoints`
TTL_INDEX = "retention"
#: the largest `expireAfterSeconds` MongoDB takes (a 32-bit integer)
MAX_SECONDS = 2**31 - 1
#: MongoDB's codes for an index that is not there, and for one there with other options
_INDEX_NOT_FOUND = 27
_INDEX_CONFLICTS = frozenset({85, 86})
_MIGRATION = "retention-ended"


def ttl_seconds(days: float) -> int | None:
    """`expireAfterSeconds` for a retention of `days`; None for ever (0, or not finite)."""
    if not 0 < days < math.inf:
        return None
    return max(1, min(MAX_SECONDS, round(days * 86400)))


def as_date(value: Any) -> datetime | None:
    """An ISO timestamp of the document as a BSON date (naive UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value).replace(tzinfo=None)
    except ValueError:
        return None


def finished(doc: Mapping[str, Any]) -> datetime | None:
    """When a stored document finished: its end, or its start; None while it is active."""
    if doc.get("status") not in TERMINAL:
        return None
    return as_date(doc.get("end")) or as_date(doc.get("start"))


def dated(doc: Mapping[str, Any]) -> dict[str, datetime]:
    """The hidden date of a document stored finished (`_meta` keys), if it is."""
    moment = finished(doc)
    return {} if moment is None else {META_ENDED: moment}


def status_change(change: Update) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `$set` and `$unset` of `_meta.ended` that go with a change of status."""
    sets = change.set or {}
    if "status" not in sets:
        return {}, {}
    if sets["status"] in TERMINAL:
        moment = as_date(sets.get("end")) or datetime.now(UTC).replace(tzinfo=None)
        return {ENDED: moment}, {}
    return {}, {ENDED: ""}


def mark_checkpoint(checkpoints: Collection[Any], execution_id: str, moment: datetime) -> None:
    """Give a finished run's checkpoints and change journal the date it finished."""
    for side in (checkpoints, checkpoints.database["changes"]):
        side.update_many({"run": execution_id}, {"$set": {CHECKPOINT_ENDED: moment}})


def keep_for(
    executions: Collection[Any],
    checkpoints: Collection[Any],
    migrations: Collection[Any],
    days: float,
) -> None:
    """Make the TTL indexes match a retention of `days` (0: for ever, no index), and date the
    finished runs and checkpoints stored before the dates were kept (once)."""
    seconds = ttl_seconds(days)
    _ensure_ttl(executions, ENDED, seconds)
    _ensure_ttl(checkpoints, CHECKPOINT_ENDED, seconds)
    _ensure_ttl(checkpoints.database["changes"], CHECKPOINT_ENDED, seconds)
    if seconds is not None and migrations.find_one({"_id": _MIGRATION}) is None:
        _date_earlier_runs(executions, checkpoints)
        migrations.update_one({"_id": _MIGRATION}, {"$set": {"done": True}}, upsert=True)


def _ensure_ttl(collection: Collection[Any], field: str, seconds: int | None) -> None:
    present = collection.index_information().get(TTL_INDEX)
    if seconds is None:
        if present is not None:
            try:
                collection.drop_index(TTL_INDEX)
            except OperationFailure as exc:  # another process dropped it first
                if exc.code != _INDEX_NOT_FOUND:
                    raise
        return
    if present is None:
        try:
            collection.create_index([(field, 1)], name=TTL_INDEX, expireAfterSeconds=seconds)
            return
        except OperationFailure as exc:  # another process made it first, with other seconds
            if exc.code not in _INDEX_CONFLICTS:
                raise
    elif present.get("expireAfterSeconds") == seconds:
        return
    collection.database.command(
        "collMod", collection.name, index={"name": TTL_INDEX, "expireAfterSeconds": seconds}
    )


def _date_earlier_runs(executions: Collection[Any], checkpoints: Collection[Any]) -> None:
    """`_meta.ended` for the finished runs stored without it, and `ended` for their
    checkpoints and for those whose run is gone (from now)."""
    terminal = {"$in": sorted(TERMINAL)}
    undated = executions.find(
        {"status": terminal, ENDED: {"$exists": False}}, {"status": 1, "start": 1, "end": 1}
    )
    for doc in undated:
        moment = finished(doc)
        if moment is not None:
            executions.update_one(
                {"_id": doc["_id"], "status": terminal}, {"$set": {ENDED: moment}}
            )
    now = datetime.now(UTC).replace(tzinfo=None)
    for checkpoint in checkpoints.find({CHECKPOINT_ENDED: {"$exists": False}}, {"run": 1}):
        run = executions.find_one(
            {"_id": checkpoint.get("run", checkpoint["_id"])}, {"status": 1, ENDED: 1}
        )
        if run is None:
            moment = now
        elif run.get("status") in TERMINAL:
            moment = (run.get("_meta") or {}).get(META_ENDED) or now
        else:
            continue
        checkpoints.update_one(
            {"_id": checkpoint["_id"], CHECKPOINT_ENDED: {"$exists": False}},
            {"$set": {CHECKPOINT_ENDED: moment}},
        )


def purge(
    executions: Collection[Any], checkpoints: Collection[Any], before: str, limit: int
) -> int:
    """Delete up to `limit` finished runs dated before `before`, and their checkpoints."""
    cutoff = as_date(before)
    if limit <= 0:
        return 0
    if cutoff is None:
        raise ValueError(f"purge: {before!r} is not an ISO timestamp")
    expired = {"status": {"$in": sorted(TERMINAL)}, ENDED: {"$lt": cutoff}}
    ids = [row["_id"] for row in executions.find(expired, {"_id": 1}).limit(limit)]
    if not ids:
        return 0
    deleted = executions.delete_many({"_id": {"$in": ids}, **expired}).deleted_count
    checkpoints.delete_many({"run": {"$in": ids}})
    checkpoints.database["changes"].delete_many({"run": {"$in": ids}})
    return int(deleted)
