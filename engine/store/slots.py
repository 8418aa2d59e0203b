"""The store's part of the concurrency limits (`engine.concurrency`): slots, and the runs that
wait for one.

A slot is one of the `limit` places of a scope (a process, a process and one value of its
`limit_key`, or every run: `*`), held by one run (`holder`, an execution id) from its claim
until it ends: on SQLite a row of the `slots` table, on MongoDB a document of the `slots`
collection whose `_id` is `<scope>/<n>`, so that the unique key lets one taker through. A run
that finds its scope full is parked: it stays `triggered`, its meta `waiting` names the scope
and its dispatch mark is `PARKED`, later than any moment the redelivery asks about, so that it
is never sent again as undelivered; `unpark` takes the oldest one back, atomically.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Sequence

#: the dispatch mark of a run parked until a slot frees: later than every `before` asked
PARKED = "9999-12-31T23:59:59.999Z"


class SlotStore(abc.ABC):
    """The slots of the concurrency limits, on any backend."""

    @abc.abstractmethod
    def take_slots(
        self, holder: str, wanted: Sequence[tuple[str, int]], start: str, at: str
    ) -> tuple[str, int] | None:
        """Take a slot of each `(scope, limit)` of `wanted` for the run `holder`, triggered at
        `start`, all or none. A scope where `holder` holds one already is taken. A scope whose
        `limit` slots are held, or for which a run triggered before `start` is parked, stops
        it: the slots taken by this call are given back and that scope is returned, with how
        many of its slots are held. None: every slot taken."""

    @abc.abstractmethod
    def release_slots(self, holder: str) -> builtins.list[str]:
        """Give back every slot `holder` holds; the scopes they were of."""

    @abc.abstractmethod
    def slots_held(self, scope: str) -> int:
        """How many slots of `scope` are held."""

    @abc.abstractmethod
    def slot_holders(self) -> builtins.list[tuple[str, str]]:
        """Every slot held: (scope, holder)."""

    @abc.abstractmethod
    def waiting_scopes(self) -> dict[str, int]:
        """How many runs are parked for each scope (the scopes that have some)."""

    @abc.abstractmethod
    def unpark(self, scope: str, at: str) -> str | None:
        """The run parked longest for `scope` (the earliest `start`, then the least id): its
        `waiting` mark cleared and its dispatch mark set to `at`, at once; its id, or None."""
