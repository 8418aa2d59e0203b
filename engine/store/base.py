"""The store interface: execution documents, API tokens and loaded series, on any backend."""

from __future__ import annotations

import abc
import builtins
import contextlib
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from procexec.engine.errors import BadRequest, StoreUnavailable, excerpt
from procexec.engine.query import Query
from procexec.engine.query.tree import MAX_FILTER_DEPTH, MAX_QUERY_NODES
from procexec.engine.schema import DOCUMENT_FIELDS, PHASE_FIELDS

# `Update` and `apply_update`: a change to one document, importable beside the store's interface
from procexec.engine.store.changes import JournalRow as JournalRow
from procexec.engine.store.changes import Update as Update
from procexec.engine.store.changes import apply_update as apply_update

# `TokenRecord`: the store's record of a token, importable beside the store's interface
from procexec.engine.store.credentials import TokenRecord as TokenRecord
from procexec.engine.store.credentials import TokenStore
from procexec.engine.store.slots import SlotStore

StoreT = TypeVar("StoreT", bound="ExecutionStore")

#: internal bookkeeping kept beside a document, never served by the API
META_KEYS = ("worker", "heartbeat", "input", "chain", "dispatched", "due", "recoveries", "waiting")
#: meta values that are JSON (the others are strings)
JSON_META_KEYS = frozenset({"input", "chain", "recoveries"})


def _ordered(doc: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    result = {key: doc[key] for key in order if key in doc}
    result.update((key, value) for key, value in doc.items() if key not in result)
    return result


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its fields in the seed page's order.

    MongoDB (5.0 and later) adds fields that `$set` creates in alphabetical order, so a store
    that cannot keep insertion order restores it on the way out.
    """
    result = _ordered(doc, DOCUMENT_FIELDS)
    phases = result.get("phases")
    if isinstance(phases, list):
        result["phases"] = [
            _ordered(phase, PHASE_FIELDS) if isinstance(phase, Mapping) else phase
            for phase in phases
        ]
    return result


@dataclass(frozen=True)
class Observation:
    """One value of one series on one date, as a LOAD phase writes it."""

    series_id: str
    date: str
    value: float


@dataclass(frozen=True)
class ProcessState:
    """What operators changed about a process at run time, and what its schedule did.

    `enabled`, `schedule` and `timezone` override the definition when not None.
    """

    name: str
    enabled: bool | None = None
    schedule: str | None = None
    timezone: str | None = None
    #: the latest fire time handled (run or skipped), ISO UTC
    last_fire: str | None = None
    #: how many fire times were skipped in all
    missed: int = 0
    #: the operator's concurrency limit: 0 none, None the definition's `max_running`
    max_running: int | None = None


#: the fields of `ProcessState` an operator may set
PROCESS_OVERRIDES = ("enabled", "schedule", "timezone", "max_running")


@dataclass(frozen=True)
class Action:
    """One operator action, as the audit trail keeps it: who did what to what, and when."""

    #: ISO UTC with milliseconds
    at: str
    #: the user (a token's), or `cli:<os user>` for a command run on the store directly
    who: str
    #: `enable`, `disable`, `schedule`, `limit`, `backfill`, `rerun`, `cancel`,
    #: `token-create`, `token-revoke`
    action: str
    #: what it was done to: a process's name, an execution's id, a token's user
    target: str
    #: what else says what was done (a schedule, a limit, a range, the new run's id …)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexState:
    """One index a store makes when it opens, and whether its database holds it."""

    collection: str
    name: str
    present: bool


@dataclass(frozen=True)
class StoreReport:
    """What `ExecutionStore.check` found: whether the store answers, its indexes, its counts.

    `error` names what failed: the store not answering (`reachable` false), or a step after it.
    """

    kind: str
    reachable: bool
    error: str | None = None
    indexes: tuple[IndexState, ...] = ()
    #: executions in all, and by status (the statuses that have some)
    executions: int | None = None
    by_status: Mapping[str, int] = field(default_factory=dict)
    checkpoints: int | None = None

    @property
    def missing(self) -> list[IndexState]:
        return [index for index in self.indexes if not index.present]

    @property
    def healthy(self) -> bool:
        return self.reachable and self.error is None and not self.missing


class InlineBudgetExceeded(Exception):
    """A call made under `ExecutionStore.inline()` did more than a little work and gave up."""


class ExecutionStore(TokenStore, SlotStore, abc.ABC):
    """Where execution documents live, API tokens (`TokenStore`) and the slots of the
    concurrency limits (`SlotStore`); one conformance suite holds every backend to it."""

    kind: str = "abstract"

    @abc.abstractmethod
    def insert(self, doc: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
        """Store a new execution document (its `_id` must be new) and its hidden `meta`."""

    @abc.abstractmethod
    def get_meta(self, execution_id: str) -> dict[str, Any]:
        """The hidden bookkeeping of an execution (`META_KEYS`); empty when unknown."""

    @abc.abstractmethod
    def get(self, execution_id: str, environment: str | None = None) -> dict[str, Any] | None:
        """One document by id, or None; with `environment`, only from that environment."""

    @abc.abstractmethod
    def get_at(self, execution_id: str) -> tuple[dict[str, Any], int] | None:
        """One document by id and its sequence number, read together; None when unknown."""

    @abc.abstractmethod
    def holder(self, execution_id: str) -> tuple[str | None, str | None]:
        """A run's status and the claim that holds it (its worker's fencing token), read
        together; (None, None) when unknown."""

    @abc.abstractmethod
    def update(self, execution_id: str, change: Update) -> bool:
        """Apply `change` atomically; False when the document is missing or not as expected."""

    @abc.abstractmethod
    def changes(
        self, execution_id: str, after: int = 0
    ) -> builtins.list[tuple[int, dict[str, Any]]]:
        """The run's change journal after sequence number `after`: (number, entry), in order."""

    #: whether entries of the journal of every run are written in the order of their places
    #: (SQLite: one writer at a time); else a place may show before an earlier one (MongoDB)
    journal_in_order: bool = True

    def journal_since(self, after: int, limit: int = 500) -> builtins.list[JournalRow]:
        """The change journal of every run after the place `after`, in order (`JournalRow`);
        NotImplementedError on a store that keeps no such order."""
        raise NotImplementedError("this store keeps no journal of every run")

    def journal_head(self) -> int:
        """The place of the latest entry of the journal of every run (0 when empty)."""
        raise NotImplementedError("this store keeps no journal of every run")

    @abc.abstractmethod
    def list(self, query: Query) -> tuple[list[dict[str, Any]], int]:
        """The page of documents that `query` selects, and how many it selects in all."""

    def list_json(self, query: Query) -> tuple[builtins.list[bytes], int]:
        """`list`, each document as UTF-8 JSON: stores that keep JSON serve it as it is, without
        parsing it or decoding it."""
        rows, total = self.list(query)
        return [json.dumps(row, separators=(",", ":")).encode() for row in rows], total

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A context whose writes of this thread are one transaction where the store has them
        (SQLite: one commit for many inserts); on other stores each write stands alone."""
        return contextlib.nullcontext()

    def inline(self) -> contextlib.AbstractContextManager[None] | None:
        """A context in which this thread's calls give up with `InlineBudgetExceeded` once
        they have done a little work, so that an event loop may try them itself before it hands
        them to a worker thread; None when the store cannot bound its calls."""
        return None

    def limited(self, seconds: float | None) -> contextlib.AbstractContextManager[None]:
        """A context in which this thread's reads stop with `QueryTimeout` once they have run
        for `seconds` (None, zero or less, infinity: no limit): the API's reads run in it, the
        engine's calls never do.

        Nested, the outer limit holds. Stores that cannot bound their calls ignore it."""
        if seconds is None or not 0 < seconds < math.inf:
            return contextlib.nullcontext()
        return self._limited(seconds)

    def _limited(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """`limited`, for a limit of `seconds` (positive, finite)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def distinct(self, query: Query) -> builtins.list[Any]:
        """The distinct values of the field `query.distinct` among the documents `query` selects.

        As MongoDB's distinct: arrays on the path are unwound; null and missing values are left
        out; the values come sorted (null, numbers, strings, the rest).
        """

    @abc.abstractmethod
    def fieldinfo(self, query: Query) -> builtins.list[dict[str, Any]]:
        """The values of the field `query.fieldinfo` among the documents `query` selects, each
        with how many of them hold it and the filter that selects those (`field_buckets`)."""

    @abc.abstractmethod
    def aggregate(self, query: Query) -> builtins.list[dict[str, Any]]:
        """The results of the pipeline `query.aggregate` over the documents `query` selects
        (all of them: `limit` and `skip` do not apply), at most `MAX_DISTINCT` of them."""

    @abc.abstractmethod
    def upsert_observations(self, environment: str, rows: Sequence[Observation]) -> int:
        """Insert or replace series values; returns how many rows were written."""

    @abc.abstractmethod
    def get_series(self, environment: str, series_id: str) -> dict[str, float]:
        """The values of one series by date (empty when unknown)."""

    @abc.abstractmethod
    def stale(
        self, statuses: Sequence[str], meta_key: str, before: str, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        """Executions in one of `statuses` whose `meta_key` (heartbeat, dispatched) is missing or
        older than `before`: (id, meta) pairs, oldest first."""

    @abc.abstractmethod
    def save_checkpoint(self, execution_id: str, phase: int, blob: bytes) -> None:
        """Keep what a finished phase hands on, one checkpoint per phase, so that a recovered
        run resumes after it (and a rerun may start from any phase)."""

    @abc.abstractmethod
    def load_checkpoint(
        self, execution_id: str, phase: int | None = None
    ) -> tuple[int, bytes] | None:
        """A run's checkpoint of `phase`, or its latest: (phase index, blob), or None."""

    @abc.abstractmethod
    def purge(self, before: str, limit: int = 100) -> int:
        """Delete up to `limit` finished executions (`TERMINAL`) that ended before `before` (ISO
        UTC; a document without `end` by its `start`), with their checkpoints and whatever else
        is kept of them; returns how many were deleted. Active runs are never deleted. The
        housekeeping calls it in batches until it deletes fewer than `limit`."""

    def keep_for(self, days: float) -> None:
        """Start-up: the retention of finished runs, in days (0, or not finite: for ever), for
        a store that deletes expired runs by itself (MongoDB's TTL index); `purge` does it on
        every store."""

    @abc.abstractmethod
    def process_states(self) -> dict[str, ProcessState]:
        """The stored state of every process that has one, by name."""

    @abc.abstractmethod
    def set_process_state(self, name: str, **overrides: Any) -> ProcessState:
        """Set some of `PROCESS_OVERRIDES` for a process (None clears an override)."""

    @abc.abstractmethod
    def record_action(self, action: Action) -> None:
        """Add an operator action to the audit trail."""

    @abc.abstractmethod
    def actions(
        self,
        *,
        since: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Action]:
        """The audit trail, newest first: at most `limit` actions at or after `since` (ISO UTC),
        of one kind and on one target when given."""

    @abc.abstractmethod
    def advance_schedule(self, name: str, last_fire: str, missed: int = 0) -> bool:
        """Move `last_fire` forward to `last_fire` and add `missed`, atomically.

        False (and nothing changed) when the stored `last_fire` is already at or past it: another
        scheduler handled that fire time.
        """

    @abc.abstractmethod
    def ping(self) -> None:
        """Ask the store to answer, cheaply; raises `StoreUnavailable` when it cannot."""

    @abc.abstractmethod
    def check(self, timeout: float = 5.0) -> StoreReport:
        """Whether the store answers within `timeout` seconds, which of its indexes it holds,
        and how many executions and checkpoints; changes nothing, and raises nothing when the
        store is down (the report says so)."""

    def close(self) -> None:
        """Release connections."""

    def release_thread(self) -> None:
        """Release what the calling thread holds (its connection), before the thread ends."""


#: which backend errors are the query's fault, not the store's: a predicate (`translate_errors`)
Refused = Callable[[BaseException], bool]


def too_large(backend: str, exc: BaseException) -> BadRequest:
    """The 400 of a query the store refuses as too large or too deep to run (SQLite's
    `Expression tree is too large`, `parser stack overflow`…): the query's fault, not an
    outage; its own limit named beside the query language's."""
    return BadRequest(
        f"query: too large or too deep for the {backend} store ({excerpt(str(exc))}); the "
        f"filters hold at most {MAX_QUERY_NODES} nodes nested {MAX_FILTER_DEPTH} levels, and "
        "fewer when they reach into data and phases: narrow them"
    )


def translate_errors(
    errors: tuple[type[BaseException], ...], backend: str, refused: Refused | None = None
) -> Callable[[type[StoreT]], type[StoreT]]:
    """Class decorator: a backend error in any public method becomes `StoreUnavailable`.

    So that the API answers 503 with a clear message when the store is down, full or locked,
    instead of a 500; the backend's own message is kept. An error `refused` says is the
    query's (too large, too deep) becomes a `BadRequest` instead (`too_large`): a 400, never a
    503 that monitoring reads as an outage.
    """

    def decorate(cls: type[StoreT]) -> type[StoreT]:
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or not callable(member):
                continue
            setattr(cls, name, _translating(member, errors, backend, refused))
        return cls

    return decorate


def _translating(
    method: Callable[..., Any],
    errors: tuple[type[BaseException], ...],
    backend: str,
    refused: Refused | None,
) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except errors as exc:
            if refused is not None and refused(exc):
                raise too_large(backend, exc) from exc
            raise StoreUnavailable(f"the {backend} store is unavailable: {exc}") from exc

    return wrapper
