"""The adapter of the MongoDB stand-in: mongomock's client, made to take the calls of the
production store that mongomock itself cannot run. Test code only.

`MongoStore` uses a real server's features and knows nothing of the stand-in; where mongomock
lacks one, this adapter supplies it, each as MongoDB documents it:

- `bulk_write` of pymongo's write models (mongomock 4.3 cannot take those of pymongo 4.9 and
  later): applied one by one, in order, as an unordered bulk applies them when none fails;
- `$text` in a find, count or aggregation's `$match`: mongomock has none, so the adapter reads
  the collection's text index and turns `$text` into the match MongoDB makes through it (any of
  the words, whole, in any of the indexed fields, case-insensitive). Only the plain word lists
  the store sends are taken: a phrase or a negated word in `$search` is refused;
- `array_filters` of an update, `update_one` or `find_one_and_update`
  (`phases.$[running].status` with `running.status: running`): the update is applied to the
  elements the filters select, named by their index;
- options mongomock's calls do not take (`maxTimeMS` on `distinct`), dropped: mongomock never
  stops a read;
- `$regex` of a pattern the API checked (a string, no `$options`): matched by RE2, as the
  store's SQLite twin matches it, not by mongomock's Python `re`, which backtracks without
  bound where the server's PCRE stops at its match limit (a hostile `(a+)+$` would hold a
  test for hours). The rows a pattern selects stay those of the server for patterns RE2 takes;
- `list_indexes`: a text index listed in the server's shape (keys `_fts` and `_ftsx`, the
  fields in `weights`), not in mongomock's (the fields themselves);
- each write atomic, as a server makes it: mongomock looks for a key, then stores it, so that
  two threads (two beats, a backfill beside a beat) could both insert one `_id`, or both pass
  one conditional update. Every write of every stand-in holds one lock (`_WRITING`).

Everything else goes to mongomock as it is.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import mongomock
import pymongo
import re2
from bson.regex import Regex
from mongomock.filtering import filter_applies
from pymongo.results import BulkWriteResult, UpdateResult


def _expanded(
    doc: Mapping[str, Any], update: Mapping[str, Any], array_filters: list[Mapping[str, Any]]
) -> dict[str, Any]:
    """`update` with each filtered path (`$[name]`) replaced by the paths it selects in `doc`."""
    return {
        operator: {
            path: value
            for given, value in fields.items()
            for path in _filtered_paths(doc, given, array_filters)
        }
        for operator, fields in update.items()
    }


def _filtered_paths(
    doc: Mapping[str, Any], path: str, array_filters: list[Mapping[str, Any]]
) -> list[str]:
    """The paths that `path` names in `doc`: itself, or for `a.$[x].b` one `a.<i>.b` for each
    element `i` of `a` that the filter of `x` in `array_filters` selects."""
    parts = path.split(".")
    at = next((i for i, part in enumerate(parts) if part.startswith("$[")), None)
    if at is None:
        return [path]
    name = parts[at][2:-1]
    conditions = {
        key.removeprefix(f"{name}."): condition
        for array_filter in array_filters
        for key, condition in array_filter.items()
        if key.split(".")[0] == name
    }
    array: Any = doc
    for part in parts[:at]:
        array = array[int(part)] if isinstance(array, list) else array.get(part, [])
    return [
        ".".join([*parts[:at], str(index), *parts[at + 1 :]])
        for index, element in enumerate(array)
        if isinstance(element, Mapping) and filter_applies(conditions, element)
    ]


class _Re2Regex(Regex):  # type: ignore[type-arg]
    """A `$regex` that mongomock matches with RE2 (it compiles a BSON `Regex` by `try_compile`)."""

    def try_compile(self) -> Any:
        return re2.compile(self.pattern)


#: held by each write to a stand-in, which mongomock does not make atomic
_WRITING = threading.RLock()
#: mongomock's writes that the adapter passes through as they are, under `_WRITING`
_PLAIN_WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "find_one_and_delete",
        "find_one_and_replace",
    }
)


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def held(*args: Any, **kwargs: Any) -> Any:
        with _WRITING:
            return write(*args, **kwargs)

    return held


def adapted_client() -> AdaptedClient:
    """A new in-memory stand-in, adapted: what the store tests hand `MongoStore(client=...)`."""
    return AdaptedClient(mongomock.MongoClient())


class AdaptedClient:
    """mongomock's `MongoClient`, handing out adapted databases."""

    def __init__(self, client: mongomock.MongoClient) -> None:
        self.standin = client

    def __getitem__(self, name: str) -> AdaptedDatabase:
        return AdaptedDatabase(self.standin[name])

    def get_database(self, name: str) -> AdaptedDatabase:
        return self[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.standin, name)


class AdaptedDatabase:
    """mongomock's `Database`, handing out adapted collections."""

    def __init__(self, database: Any) -> None:
        self.standin = database
        self.name = database.name

    def __getitem__(self, name: str) -> AdaptedCollection:
        return AdaptedCollection(self.standin[name], self)

    def get_collection(self, name: str) -> AdaptedCollection:
        return self[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.standin, name)


class AdaptedCollection:
    """mongomock's `Collection`, with what the production store needs and mongomock lacks."""

    def __init__(self, collection: Any, database: AdaptedDatabase) -> None:
        self.standin = collection
        self.name = collection.name
        #: the adapted database it came from, as pymongo's `Collection.database`
        self.database = database

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.standin, name)
        return _atomic(found) if name in _PLAIN_WRITES else found

    # --- reads whose filter may hold `$text` ---------------------------------------------

    def find(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self.standin.find(self._without_text(filter), *args, **kwargs)

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self.standin.find_one(self._without_text(filter), *args, **kwargs)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        count: int = self.standin.count_documents(self._without_text(filter), **kwargs)
        return count

    def distinct(self, key: str, filter: Any = None, **options: Any) -> list[Any]:
        options.pop("maxTimeMS", None)  # mongomock never stops a read
        found: list[Any] = self.standin.distinct(key, self._without_text(filter), **options)
        return found

    def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> Any:
        stages = [
            {"$match": self._without_text(stage["$match"])} if "$match" in stage else stage
            for stage in pipeline
        ]
        return self.standin.aggregate(stages, **kwargs)

    def _without_text(self, filter: Any) -> Any:
        """`filter` with each `$text` turned into the match the collection's text index
        makes."""
        if isinstance(filter, list):
            return [self._without_text(item) for item in filter]
        if not isinstance(filter, Mapping):
            return filter
        rest = {
            key: _Re2Regex(value) if key == "$regex" and isinstance(value, str) else value
            for key, value in (
                (key, self._without_text(value)) for key, value in filter.items() if key != "$text"
            )
        }
        if "$text" not in filter:
            return rest
        matched = self._text_match(filter["$text"])
        return {"$and": [rest, matched]} if rest else matched

    def _text_match(self, text: Mapping[str, Any]) -> dict[str, Any]:
        search = str(text["$search"])
        if '"' in search or any(word.startswith("-") for word in search.split()):
            raise NotImplementedError(f"the stand-in's $text takes plain words only: {search!r}")
        fields = self._text_fields()
        patterns = [rf"(?<!\w){re.escape(word)}(?!\w)" for word in search.split()]
        return {
            "$or": [
                {field: {"$regex": pattern, "$options": "i"}}
                for field in fields
                for pattern in patterns
            ]
        }

    def _text_fields(self) -> list[str]:
        for index in self.standin.index_information().values():
            fields = [field for field, kind in index["key"] if kind == "text"]
            if fields:
                return fields
        # as a server answers a `$text` without a text index
        raise pymongo.errors.OperationFailure("text index required for $text query", code=27)

    # --- writes ------------------------------------------------------------------------------

    @_atomic
    def bulk_write(self, requests: list[Any], ordered: bool = True, **_: Any) -> BulkWriteResult:
        matched = modified = upserted = 0
        for request in requests:
            if not isinstance(request, pymongo.UpdateOne):
                raise NotImplementedError(f"the stand-in's bulk_write takes UpdateOne: {request}")
            result = self.standin.update_one(request._filter, request._doc, upsert=request._upsert)
            matched += result.matched_count
            modified += result.modified_count
            upserted += result.upserted_id is not None
        return BulkWriteResult(
            {"nMatched": matched, "nModified": modified, "nUpserted": upserted, "upserted": []},
            acknowledged=True,
        )

    @_atomic
    def update_one(
        self,
        filter: Any,
        update: Mapping[str, Any],
        upsert: bool = False,
        array_filters: list[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        if array_filters is None:
            return self.standin.update_one(filter, update, upsert=upsert, **kwargs)
        if upsert:
            raise NotImplementedError("the stand-in's array_filters take no upsert")
        doc = self.standin.find_one(filter)
        if doc is None:
            return UpdateResult({"n": 0, "nModified": 0}, acknowledged=True)
        expanded = _expanded(doc, update, array_filters)
        return self.standin.update_one({"_id": doc["_id"]}, expanded, **kwargs)

    @_atomic
    def find_one_and_update(
        self,
        filter: Any,
        update: Mapping[str, Any],
        *args: Any,
        array_filters: list[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        if array_filters is None:
            return self.standin.find_one_and_update(filter, update, *args, **kwargs)
        doc = self.standin.find_one(filter)
        if doc is None:
            return None
        expanded = _expanded(doc, update, array_filters)
        return self.standin.find_one_and_update({"_id": doc["_id"]}, expanded, *args, **kwargs)

    # --- indexes -----------------------------------------------------------------------------

    def list_indexes(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for index in self.standin.list_indexes(*args, **kwargs):
            key = dict(index["key"])
            text = [field for field, kind in key.items() if kind == "text"]
            if text:
                # a server lists the keys `_fts` and `_ftsx`, the text fields in `weights`
                others = {field: kind for field, kind in key.items() if kind != "text"}
                index = {
                    **index,
                    "key": {**others, "_fts": "text", "_ftsx": 1},
                    "weights": dict.fromkeys(text, 1),
                }
            yield index
