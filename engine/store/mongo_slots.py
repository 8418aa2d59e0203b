"""The MongoDB store's slots of the concurrency limits (`engine.store.slots`): the `slots`
collection, one document a slot held, `_id` `<scope>/<n>`, so that the unique key lets one
taker through; the parked runs, found among the `triggered` ones by their `PARKED` dispatch
mark (the housekeeping's index on status and dispatch mark)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import pymongo
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from procexec.engine.domain import Status
from procexec.engine.store.slots import PARKED


def _parked(scope: str) -> dict[str, Any]:
    return {
        "status": Status.TRIGGERED.value,
        "_meta.dispatched": PARKED,
        "_meta.waiting": scope,
    }


class MongoSlots:
    """`SlotStore` over the `slots` and `executions` collections."""

    executions: Collection[Any]
    slots: Collection[Any]

    def take_slots(
        self, holder: str, wanted: Sequence[tuple[str, int]], start: str, at: str
    ) -> tuple[str, int] | None:
        taken: list[str] = []
        for scope, limit in wanted:
            if self.slots.find_one({"scope": scope, "holder": holder}, {"_id": 1}) is not None:
                continue
            held = self.slots.count_documents({"scope": scope})
            earlier = {"$or": [{"start": {"$lt": start}}, {"start": start, "_id": {"$lt": holder}}]}
            if held >= limit or self.executions.find_one({**_parked(scope), **earlier}, {"_id": 1}):
                self._give_back(taken)
                return scope, held
            got = self._insert(scope, limit, holder, at)
            if got is None:
                self._give_back(taken)
                return scope, limit
            # Another taker of the same run, or over a limit lowered while its runs went on:
            # the lowest slot of a run is kept, and no more than `limit` are held.
            rows = list(self.slots.find({"scope": scope}, {"holder": 1, "n": 1}))
            mine = sorted(row["n"] for row in rows if row["holder"] == holder)
            if mine[0] != got:
                self._give_back([f"{scope}/{got}"])
                continue
            if len(rows) - len(mine) + 1 > limit:
                self._give_back([*taken, f"{scope}/{got}"])
                return scope, len(rows) - 1
            taken.append(f"{scope}/{got}")
        return None

    def _insert(self, scope: str, limit: int, holder: str, at: str) -> int | None:
        """The first free slot of `scope` taken for `holder`; None when every one is held."""
        for n in range(limit):
            try:
                row = {"_id": f"{scope}/{n}", "scope": scope, "n": n, "holder": holder}
                self.slots.insert_one({**row, "taken": at})
                return n
            except DuplicateKeyError:
                continue
        return None

    def _give_back(self, ids: builtins.list[str]) -> None:
        if ids:
            self.slots.delete_many({"_id": {"$in": ids}})

    def release_slots(self, holder: str) -> builtins.list[str]:
        rows = list(self.slots.find({"holder": holder}, {"scope": 1}))
        if rows:
            self.slots.delete_many({"_id": {"$in": [row["_id"] for row in rows]}})
        return sorted({row["scope"] for row in rows})

    def slots_held(self, scope: str) -> int:
        return int(self.slots.count_documents({"scope": scope}))

    def slot_holders(self) -> builtins.list[tuple[str, str]]:
        rows = self.slots.find({}, {"scope": 1, "holder": 1}).sort([("scope", 1), ("n", 1)])
        return [(row["scope"], row["holder"]) for row in rows]

    def waiting_scopes(self) -> dict[str, int]:
        found: dict[str, int] = {}
        selector = {"status": Status.TRIGGERED.value, "_meta.dispatched": PARKED}
        for row in self.executions.find(selector, {"_meta.waiting": 1}):
            scope = (row.get("_meta") or {}).get("waiting")
            if scope is not None:
                found[scope] = found.get(scope, 0) + 1
        return found

    def unpark(self, scope: str, at: str) -> str | None:
        row = self.executions.find_one_and_update(
            _parked(scope),
            {"$set": {"_meta.waiting": None, "_meta.dispatched": at}},
            projection={"_id": 1},
            sort=[("start", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
        )
        return None if row is None else str(row["_id"])
