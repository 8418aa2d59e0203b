"""The production store: MongoDB through pymongo, with atomic `$set`/`$push` updates.

A caller may hand it a client of its own (`client=`); the store uses a real server's features
on whatever it is given (the tests adapt their in-memory stand-in to them).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import pymongo
from pymongo.errors import DuplicateKeyError, ExecutionTimeout, OperationFailure, PyMongoError

from procexec.engine import answers, deadline
from procexec.engine.errors import (
    BadRequest,
    DuplicateExecution,
    QueryTimeout,
    StoreUnavailable,
    excerpt,
)
from procexec.engine.limits import MAX_DISTINCT
from procexec.engine.query import Query, field_buckets, sorted_distinct, too_many_values, values_at
from procexec.engine.query.pipeline import too_many_results
from procexec.engine.redact import masked_url
from procexec.engine.store import mongo_admin, mongo_tokens
from procexec.engine.store import mongo_retention as retention
from procexec.engine.store import mongo_runs as runs
from procexec.engine.store.base import (
    META_KEYS,
    PROCESS_OVERRIDES,
    Action,
    ExecutionStore,
    JournalRow,
    Observation,
    ProcessState,
    StoreReport,
    TokenRecord,
    Update,
    canonical,
    too_large,
    translate_errors,
)
from procexec.engine.store.mongo_query import (
    TEXT,
    compile_filter,
    compile_pipeline,
    mirror,
    mirror_update,
    search_filter,
    text_cover,
)
from procexec.engine.store.mongo_slots import MongoSlots

__all__ = ["MongoStore", "compile_filter"]
T = TypeVar("T")
#: a document as the list call answers it: compact JSON
compact_json = json.JSONEncoder(separators=(",", ":")).encode
#: MongoDB's codes for a query it cannot take (a bad value, a regular expression PCRE refuses)
_BAD_QUERY_CODES = frozenset({2, 51091})
#: MongoDB's codes for a query too large or too deep to run (BSONObjectTooLarge, Overflow…):
#: its fault too, a 400 (`engine.store.base.too_large`)
_TOO_LARGE_CODES = frozenset({10334, 15, 17279})


def database_of(url: str) -> str:
    """The database a `mongodb://` URL names (`procexec` when it names none)."""
    return urlparse(url).path.lstrip("/") or "procexec"


def database_exists(url: str, timeout: float = 5.0) -> bool:
    """Whether the server holds the store's database (a service has started on it), asked
    within `timeout` seconds of a bare client, since opening the store makes its indexes, and
    so the database."""
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=max(1, int(timeout * 1000)))
    try:
        return database_of(url) in client.list_database_names()
    except PyMongoError as exc:
        raise StoreUnavailable(f"the MongoDB store is unavailable: {exc}") from exc
    finally:
        client.close()


def _sliced(limit: int | None) -> dict[str, int]:
    """The `$slice` of a `$push` that keeps an array's first `limit` items (none: all)."""
    return {} if limit is None else {"$slice": limit}


@translate_errors((PyMongoError,), "MongoDB")
class MongoStore(MongoSlots, ExecutionStore):
    kind = "mongodb"
    #: places in the journal of every run are handed out before their entries are written
    journal_in_order = False

    def __init__(self, url: str, client: Any | None = None, *, prepare: bool = True) -> None:
        """The store of `url` (on `client` when given). With `prepare` (as a service opens it),
        its indexes are made and documents stored by an earlier version brought up to date;
        without (`procexec store check`), nothing is written."""
        if client is None:
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=False)
        database = database_of(url)
        #: the limit of this thread's reads (`limited`), in milliseconds
        self._local = threading.local()
        self.client = client
        self.db = client[database]
        self.executions = self.db["executions"]
        self.tokens = self.db["tokens"]
        self.observations = self.db["observations"]
        self.processes = self.db["processes"]
        self.audit = self.db["audit"]
        self.checkpoints = self.db["checkpoints"]
        self.changes_ = self.db["changes"]
        self.places = self.db["places"]
        self.slots = self.db["slots"]
        if not prepare:
            return
        try:
            mongo_admin.ensure_indexes(self.db)
            self._add_search_words()
            runs.migrate_checkpoints(self.checkpoints, self.db["migrations"])
        except PyMongoError as exc:
            raise StoreUnavailable(f"cannot open MongoDB at {masked_url(url)}: {exc}") from exc

    def ensure_indexes(self) -> builtins.list[str]:
        """Make the indexes of `mongo_admin.INDEXES` that the database lacks (those it holds
        stay as they are); the names of all of them."""
        return mongo_admin.ensure_indexes(self.db)

    def _add_search_words(self) -> None:
        """The searched words of documents stored without them (by an earlier version)."""
        migrations = self.db["migrations"]
        if migrations.find_one({"_id": "search-text"}) is None:
            for doc in self.executions.find({TEXT: {"$exists": False}}, {"_meta": 0}):
                self.executions.update_one({"_id": doc["_id"]}, {"$set": {TEXT: mirror(doc)}})
            migrations.update_one({"_id": "search-text"}, {"$set": {"done": True}}, upsert=True)

    def insert(self, doc: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
        unknown = set(meta or {}) - set(META_KEYS)
        if unknown:
            raise KeyError(f"unknown meta keys {sorted(unknown)}")
        try:
            hidden = {**(meta or {}), "text": mirror(doc), **retention.dated(doc)}
            self.executions.insert_one({**doc, "_meta": hidden})
        except DuplicateKeyError:
            raise DuplicateExecution(f"execution {doc['_id']} exists already") from None

    def get_meta(self, execution_id: str) -> dict[str, Any]:
        row = self.executions.find_one({"_id": execution_id}, {"_meta": 1})
        if row is None:
            return {}
        stored = row.get("_meta") or {}
        return {key: stored.get(key) for key in META_KEYS}

    def get(self, execution_id: str, environment: str | None = None) -> dict[str, Any] | None:
        selector: dict[str, Any] = {"_id": execution_id}
        if environment is not None:
            selector["environment"] = environment
        doc: dict[str, Any] | None = self.executions.find_one(
            selector, {"_meta": 0}, max_time_ms=self._max_time_ms()
        )
        return None if doc is None else canonical(doc)

    def get_at(self, execution_id: str) -> tuple[dict[str, Any], int] | None:
        doc: dict[str, Any] | None = self.executions.find_one(
            {"_id": execution_id}, {TEXT: 0}, max_time_ms=self._max_time_ms()
        )
        if doc is None:
            return None
        seq = (doc.pop("_meta", None) or {}).get("seq") or 0
        return canonical(doc), int(seq)

    def changes(
        self, execution_id: str, after: int = 0
    ) -> builtins.list[tuple[int, dict[str, Any]]]:
        return runs.read_changes(self.changes_, execution_id, after)

    def journal_since(self, after: int, limit: int = 500) -> builtins.list[JournalRow]:
        return runs.journal_since(self.changes_, self.executions, after, limit)

    def journal_head(self) -> int:
        return runs.journal_head(self.places)

    def holder(self, execution_id: str) -> tuple[str | None, str | None]:
        row = self.executions.find_one({"_id": execution_id}, {"status": 1, "_meta.worker": 1})
        if row is None:
            return None, None
        return row.get("status"), (row.get("_meta") or {}).get("worker")

    def update(self, execution_id: str, change: Update) -> bool:
        selector: dict[str, Any] = {"_id": execution_id}
        if change.expect_seq is not None:  # a document stored before the numbers has none
            expected = [0, None] if change.expect_seq == 0 else [change.expect_seq]
            selector["_meta.seq"] = {"$in": expected}
        if change.expect_status is not None:
            selector["status"] = {"$in": sorted(change.expect_status)}
        if change.expect_worker is not None:
            selector["_meta.worker"] = change.expect_worker
        operations: dict[str, Any] = {}
        sets = dict(change.set or {})
        sets.update({f"_meta.{key}": value for key, value in (change.meta or {}).items()})
        if sets:
            operations["$set"] = sets
        array_filters = None
        if change.fail_running_phases is not None:
            failed = {
                "phases.$[running].status": "failed",
                "phases.$[running].message": change.fail_running_phases,
            }
            if "end" in (change.set or {}):
                failed["phases.$[running].end"] = change.set["end"]  # type: ignore[index]
            operations.setdefault("$set", {}).update(failed)
            array_filters = [{"running.status": "running"}]
        limits = change.push_limit or {}
        if change.push:
            operations["$push"] = {
                path: {"$each": list(values), **_sliced(limits.get(path))}
                for path, values in change.push.items()
            }
        # the searched words (`_meta.text`) follow the texts they come from, bounded alike
        text_sets, text_pushes = mirror_update(change.set, change.push)
        for path, limit in limits.items():
            if f"{TEXT}.{path}" in text_pushes:
                text_pushes[f"{TEXT}.{path}"].update(_sliced(limit))
        if text_sets:
            operations.setdefault("$set", {}).update(text_sets)
        if text_pushes:
            operations.setdefault("$push", {}).update(text_pushes)
        # a finished run is dated for retention in the update that finishes it
        ended, undated = retention.status_change(change)
        if ended:
            operations.setdefault("$set", {}).update(ended)
        if undated:
            operations["$unset"] = undated
        if not operations:
            return self.executions.count_documents(selector, limit=1) == 1
        moment = ended.get(retention.ENDED) if ended else None
        if not change.changes_document:
            result = self.executions.update_one(selector, operations)
            after: Any = result.matched_count
        else:
            after = self._change_document(selector, operations, array_filters)
        if not after:
            return False
        # Kept once the change holds (a refused one keeps nothing); a worker lost in between
        # leaves a finished phase without it, and the run resumes from an earlier phase.
        for index, blob in change.checkpoints:
            runs.save_checkpoint(self.checkpoints, execution_id, index, blob)
        if not change.changes_document:
            return True
        place = runs.next_place(self.places)
        seq = after["_meta"]["seq"]
        runs.journal(self.changes_, execution_id, seq, change.journal(), moment, place)
        if moment is not None:  # after the journal's last entry, which is dated already
            retention.mark_checkpoint(self.checkpoints, execution_id, moment)
        return True

    def _change_document(
        self, selector: dict[str, Any], operations: dict[str, Any], array_filters: Any
    ) -> Any:
        """Apply a change to the document and raise its sequence number; the document's `_meta`
        after it (its new number), or None where the selector matched nothing."""
        operations["$inc"] = {"_meta.seq": 1}
        return self.executions.find_one_and_update(
            selector,
            operations,
            projection={"_meta.seq": 1},
            return_document=pymongo.ReturnDocument.AFTER,
            array_filters=array_filters,
        )

    def _limited(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        if self._max_time_ms() is not None:
            return contextlib.nullcontext()  # nested: the outer limit holds
        return self._max_time_block(seconds)

    @contextlib.contextmanager
    def _max_time_block(self, seconds: float) -> Iterator[None]:
        """This thread's reads, until the block ends, with `maxTimeMS`: the server stops them
        past it (pymongo's `ExecutionTimeout`). Writes never carry it."""
        self._local.max_time_ms = max(1, math.ceil(seconds * 1000))
        try:
            yield
        except ExecutionTimeout as exc:
            raise QueryTimeout(seconds) from exc
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, ExecutionTimeout):
                raise QueryTimeout(seconds) from exc.__cause__
            raise
        finally:
            self._local.max_time_ms = None

    def _max_time_ms(self) -> int | None:
        """The limit of this thread's reads, in milliseconds, what is left of the read's
        deadline (`engine.deadline`) when less; None outside `limited`."""
        limit: int | None = getattr(self._local, "max_time_ms", None)
        left = deadline.remaining()
        if limit is not None and left is not None:
            limit = min(limit, max(1, math.ceil(left * 1000)))
        return limit

    def _limit_options(self) -> dict[str, Any]:
        """`maxTimeMS` for a count, distinct or aggregate under `limited` (none outside)."""
        limit = self._max_time_ms()
        return {} if limit is None else {"maxTimeMS": limit}

    def _selector(self, query: Query) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"environment": query.environment}]
        if query.where is not None:
            parts.append(compile_filter(query.where))
        if query.search is not None:
            cover = text_cover(query.search)
            if cover:
                parts.append({"$text": {"$search": " ".join(cover), "$language": "none"}})
            parts.append(search_filter(query.search))
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def list(self, query: Query) -> tuple[list[dict[str, Any]], int]:
        return self._page(query, lambda doc: doc)

    def list_json(self, query: Query) -> tuple[builtins.list[bytes], int]:
        """`list`, each document encoded as the cursor yields it: the page holds only JSON."""
        return self._page(query, lambda doc: compact_json(doc).encode())

    def _page(
        self, query: Query, shape: Callable[[dict[str, Any]], T]
    ) -> tuple[builtins.list[T], int]:
        """The page as `shape` makes each of its documents, and the total; each counted against
        the answer's limit as the cursor yields it (`engine.answers`), the read stopped at the
        first one past it."""
        selector = self._selector(query)
        projection: dict[str, Any] = {"_meta": 0}
        if query.project:
            # the hidden bookkeeping is never served, even when asked for by name
            kept = [name for name in query.project if name.split(".")[0] != "_meta"]
            projection = {name: 1 for name in kept} | {"_id": 1}
        elif query.exclude:
            dropped = [name for name in query.exclude if name.split(".")[0] != "_meta"]
            projection |= {name: 0 for name in dropped}
        keys = list(query.sort)
        if all(name != "_id" for name, _ in keys):
            # a deterministic order among equals; a second `_id` key would override the first
            keys.append(("_id", query.sort[0][1]))

        def page() -> builtins.list[T]:
            cursor = self.executions.find(selector, projection, max_time_ms=self._max_time_ms())
            cursor = cursor.sort(keys).skip(query.skip).limit(query.limit)
            budget = answers.current()
            found = []
            for doc in deadline.checked(cursor, 64):
                item = shape(canonical(doc))
                if budget is not None and isinstance(item, bytes):
                    budget.take(len(item) + 1)
                found.append(item)
            return found

        try:
            if query.skip == 0 and query.limit > 0:
                # the first page, read first: when it is not full, it is the whole answer
                docs = page()
                if len(docs) < query.limit:
                    return docs, len(docs)
                return docs, self.executions.count_documents(selector, **self._limit_options())
            total = self.executions.count_documents(selector, **self._limit_options())
            return (page() if query.limit and total > query.skip else []), total
        except OperationFailure as exc:
            raise self._refused(exc) from exc

    def distinct(self, query: Query) -> builtins.list[Any]:
        field = query.distinct
        assert field is not None
        selector = self._selector(query)
        found: Iterable[Any]
        try:
            if query.search is None:
                found = self.executions.distinct(field, selector, **self._limit_options())
            else:  # `$text` is certain to work in a find
                parts = field.split(".")
                found = (
                    value
                    for doc in self.executions.find(
                        selector, {field: 1}, max_time_ms=self._max_time_ms()
                    )
                    for value in values_at(doc, parts)
                )
            return sorted_distinct(found, field)
        except OperationFailure as exc:
            raise self._refused(exc) from exc

    def fieldinfo(self, query: Query) -> builtins.list[dict[str, Any]]:
        field = query.fieldinfo
        assert field is not None
        selector = self._selector(query)
        try:
            if "." in field:  # through sub-documents and arrays: `values_at`, as `_distinct`
                found = self.executions.find(selector, {field: 1}, max_time_ms=self._max_time_ms())
                parts = field.split(".")
                return field_buckets(field, ((values_at(doc, parts), 1) for doc in found))
            grouped = self.executions.aggregate(
                [
                    {"$match": selector},
                    {"$group": {"_id": f"${field}", "count": {"$sum": 1}}},
                    {"$limit": MAX_DISTINCT + 1},
                ],
                **self._limit_options(),
            )
            counted = [(row["_id"], row["count"]) for row in grouped]
        except OperationFailure as exc:
            raise self._refused(exc) from exc
        if len(counted) > MAX_DISTINCT:
            raise too_many_values("_fieldinfo", field)
        return field_buckets(field, counted)

    def aggregate(self, query: Query) -> builtins.list[dict[str, Any]]:
        assert query.aggregate is not None
        pipeline = [
            {"$match": self._selector(query)},
            *compile_pipeline(query.aggregate),
            {"$limit": MAX_DISTINCT + 1},
        ]
        try:
            rows = list(
                deadline.checked(self.executions.aggregate(pipeline, **self._limit_options()))
            )
        except OperationFailure as exc:
            raise self._refused(exc) from exc
        if len(rows) > MAX_DISTINCT:
            raise too_many_results()
        return rows

    @staticmethod
    def _refused(exc: OperationFailure) -> Exception:
        if exc.code in _BAD_QUERY_CODES:
            message = (exc.details or {}).get("errmsg", str(exc))
            return BadRequest(f"query: MongoDB refused it: {excerpt(message)}")
        if exc.code in _TOO_LARGE_CODES:
            return too_large("MongoDB", exc)
        return exc

    def add_token(self, record: TokenRecord) -> None:
        mongo_tokens.add_token(self.tokens, record)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        return mongo_tokens.find_token(self.tokens, token_hash)

    def token_records(self) -> builtins.list[TokenRecord]:
        return mongo_tokens.token_records(self.tokens)

    def revoke_token(self, token_hash: str, when: str) -> bool:
        return mongo_tokens.revoke_token(self.tokens, token_hash, when)

    def upsert_observations(self, environment: str, rows: Sequence[Observation]) -> int:
        if not rows:
            return 0
        self.observations.bulk_write(
            [
                pymongo.UpdateOne(
                    {"environment": environment, "series_id": row.series_id, "date": row.date},
                    {"$set": {"value": row.value}},
                    upsert=True,
                )
                for row in rows
            ],
            ordered=False,
        )
        return len(rows)

    def get_series(self, environment: str, series_id: str) -> dict[str, float]:
        rows = self.observations.find(
            {"environment": environment, "series_id": series_id}, {"date": 1, "value": 1}
        ).sort("date", 1)
        return {row["date"]: row["value"] for row in rows}

    def stale(
        self, statuses: Sequence[str], meta_key: str, before: str, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        if meta_key not in META_KEYS:
            raise KeyError(f"unknown meta key {meta_key!r}")
        field = f"_meta.{meta_key}"
        rows = (
            self.executions.find(
                {
                    "status": {"$in": list(statuses)},
                    "$or": [{field: None}, {field: {"$lt": before}}],
                },
                {"_meta": 1},
            )
            .sort(field, 1)
            .limit(limit)
        )
        return [
            (row["_id"], {key: (row.get("_meta") or {}).get(key) for key in META_KEYS})
            for row in rows
        ]

    def save_checkpoint(self, execution_id: str, phase: int, blob: bytes) -> None:
        runs.save_checkpoint(self.checkpoints, execution_id, phase, blob)
        runs.date_if_ended(self.executions, self.checkpoints, execution_id, phase)

    def load_checkpoint(
        self, execution_id: str, phase: int | None = None
    ) -> tuple[int, bytes] | None:
        return runs.load_checkpoint(self.checkpoints, execution_id, phase)

    def purge(self, before: str, limit: int = 100) -> int:
        return retention.purge(self.executions, self.checkpoints, before, limit)

    def keep_for(self, days: float) -> None:
        retention.keep_for(self.executions, self.checkpoints, self.db["migrations"], days)

    def process_states(self) -> dict[str, ProcessState]:
        return {
            row["_id"]: ProcessState(
                row["_id"],
                row.get("enabled"),
                row.get("schedule"),
                row.get("timezone"),
                row.get("last_fire"),
                row.get("missed", 0),
                row.get("max_running"),
            )
            for row in self.processes.find({})
        }

    def set_process_state(self, name: str, **overrides: Any) -> ProcessState:
        unknown = set(overrides) - set(PROCESS_OVERRIDES)
        if unknown:
            raise KeyError(f"unknown process overrides {sorted(unknown)}")
        change: dict[str, Any] = {"$setOnInsert": {"missed": 0}}
        if overrides:
            change["$set"] = dict(overrides)
        self.processes.update_one({"_id": name}, change, upsert=True)
        return self.process_states()[name]

    def record_action(self, action: Action) -> None:
        self.audit.insert_one(
            {
                "at": action.at,
                "who": action.who,
                "action": action.action,
                "target": action.target,
                "details": dict(action.details),
            }
        )

    def actions(
        self,
        *,
        since: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Action]:
        selector: dict[str, Any] = {}
        if since is not None:
            selector["at"] = {"$gte": since}
        if action is not None:
            selector["action"] = action
        if target is not None:
            selector["target"] = target
        rows = self.audit.find(selector).sort([("at", -1), ("_id", -1)]).limit(limit)
        return [
            Action(row["at"], row["who"], row["action"], row["target"], row.get("details", {}))
            for row in rows
        ]

    def advance_schedule(self, name: str, last_fire: str, missed: int = 0) -> bool:
        self.processes.update_one({"_id": name}, {"$setOnInsert": {"missed": 0}}, upsert=True)
        result = self.processes.update_one(
            {"_id": name, "$or": [{"last_fire": None}, {"last_fire": {"$lt": last_fire}}]},
            {"$set": {"last_fire": last_fire}, "$inc": {"missed": missed}},
        )
        return bool(result.modified_count)

    def ping(self) -> None:
        self.client.admin.command("ping")

    def check(self, timeout: float = 5.0) -> StoreReport:
        return mongo_admin.check(self.client, self.db, timeout)

    def close(self) -> None:
        self.client.close()
