"""The MongoDB store's indexes and health: what the list call, `_search` and the housekeeping
need, made when the store opens (`ensure_indexes`), and compared with what a database holds
for `procexec store check` (`check`).

Each collection's indexes are listed in `INDEXES`, as pymongo's `IndexModel`s; an index is
named as MongoDB names it by default (`environment_1_start_-1__id_-1`), but for the text
index. Making them again is harmless: MongoDB leaves an index of the same keys and options as
it is. One of the same keys with other options, or of the same name with other keys, is a
conflict that stops the store from opening, with MongoDB's message.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import pymongo
from pymongo import IndexModel
from pymongo.errors import PyMongoError

from procexec.engine.domain import Status
from procexec.engine.store.base import IndexState, StoreReport
from procexec.engine.store.mongo_query import TEXT_INDEX, text_index_keys

__all__ = ["INDEXES", "check", "ensure_indexes", "index_states"]

#: the indexes of each collection (the `_id` index aside, which every collection has)
INDEXES: dict[str, list[IndexModel]] = {
    "executions": [
        # the list call: the default order (newest `start` first) and `start` ranges, within an
        # environment; then the filters on name and on status, in that order
        IndexModel([("environment", 1), ("start", -1), ("_id", -1)]),
        IndexModel([("environment", 1), ("name", 1), ("start", -1), ("_id", -1)]),
        IndexModel([("environment", 1), ("status", 1), ("start", -1), ("_id", -1)]),
        # the housekeeping: active runs without a recent heartbeat, triggers not dispatched
        IndexModel([("status", 1), ("_meta.heartbeat", 1)]),
        IndexModel([("status", 1), ("_meta.dispatched", 1)]),
        # `_search`: the searched words of each document (`mongo_query`)
        IndexModel(
            text_index_keys(),
            name=TEXT_INDEX,
            default_language="none",
            language_override="_textLanguage",
        ),
    ],
    # a run's checkpoints and its change journal, by run (then phase, number)
    "checkpoints": [IndexModel([("run", 1), ("phase", -1)])],
    "changes": [IndexModel([("run", 1), ("seq", 1)]), IndexModel([("pos", 1)], sparse=True)],
    "observations": [
        IndexModel([("environment", 1), ("series_id", 1), ("date", 1)], unique=True),
    ],
    # the audit trail, newest first
    "audit": [IndexModel([("at", -1)])],
    # the slots of the concurrency limits, by holder and by scope (`mongo_slots`)
    "slots": [IndexModel([("holder", 1)]), IndexModel([("scope", 1), ("n", 1)])],
}


def ensure_indexes(db: Any) -> builtins.list[str]:
    """Make every index of `INDEXES` that `db` lacks; the names of all of them."""
    names: list[str] = []
    for collection, models in INDEXES.items():
        names += db[collection].create_indexes(models)
    return names


def _holds(wanted: Mapping[str, Any], present: Mapping[str, Any]) -> bool:
    """Whether the listed index `present` is the index `wanted` (an `IndexModel`'s document),
    whatever its name."""
    keys = dict(wanted["key"])
    text = {field for field, kind in keys.items() if kind == "text"}
    if text:
        # a server lists a text index under the keys `_fts` and `_ftsx`, its fields in `weights`
        return "_fts" in present["key"] and set(present.get("weights") or {}) == text
    return list(dict(present["key"]).items()) == list(keys.items()) and bool(
        present.get("unique")
    ) == bool(wanted.get("unique"))


def index_states(db: Any) -> builtins.list[IndexState]:
    """Each index of `INDEXES`, and whether `db` holds it."""
    states = []
    for collection, models in INDEXES.items():
        present = list(db[collection].list_indexes())
        for model in models:
            wanted = model.document
            held = any(_holds(wanted, index) for index in present)
            states.append(IndexState(collection, wanted["name"], held))
    return states


def check(client: Any, db: Any, timeout: float) -> StoreReport:
    """The store's health: a ping, then its indexes and counts, all within `timeout` seconds
    (pymongo's client-side timeout, server selection included)."""
    with pymongo.timeout(timeout):
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            return StoreReport("mongodb", reachable=False, error=str(exc))
        try:
            indexes = tuple(index_states(db))
            executions = db["executions"]
            by_status = {
                status.value: count
                for status in Status
                if (count := executions.count_documents({"status": status.value}))
            }
            return StoreReport(
                "mongodb",
                reachable=True,
                indexes=indexes,
                executions=executions.estimated_document_count(),
                by_status=by_status,
                checkpoints=db["checkpoints"].estimated_document_count(),
            )
        except PyMongoError as exc:
            return StoreReport("mongodb", reachable=True, error=str(exc))
