"""`_fieldinfo` and `_aggregate` on every store: each case runs on SQLite and on MongoDB
(mongomock without a server), and both must give exactly these results. A few cases hold SQLite
to MongoDB's documented behaviour where mongomock departs from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.query import parse_query
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from tests.engine.conftest import MONGO_URI
from tests.engine.store.documents import PROD

Params = tuple[tuple[str, str], ...]


def fieldinfo(store: ExecutionStore, *params: tuple[str, str], env: str = PROD) -> list[Any]:
    return [(b["_id"], b["count"]) for b in store.fieldinfo(parse_query(params, env))]


def aggregate(
    store: ExecutionStore, stages: list[dict[str, Any]], *params: tuple[str, str], env: str = PROD
) -> list[dict[str, Any]]:
    return store.aggregate(parse_query([("_aggregate", json.dumps(stages)), *params], env))


# --- _fieldinfo ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("_fieldinfo", "status"),),
         [("success", 5), ("failed", 3), ("running", 1), ("triggered", 1), ("warning", 1)]),
        ((("_fieldinfo", "name"),), [("ECB_FX", 5), ("DEMO", 3), ("BOE_RATES", 2), ("FX_ECB", 1)]),
        ((("_fieldinfo", "name"), ("_search", "crontab")),
         [("ECB_FX", 5), ("DEMO", 3), ("FX_ECB", 1)]),
        ((("_fieldinfo", "status"), ("name", "ECB_FX")), [("success", 3), ("failed", 2)]),
        ((("_fieldinfo", "trigger"),), [("scheduled", 9), ("manual", 1), ("subscription", 1)]),
        # an execution counts once per value it holds, however many of its phases hold it
        ((("_fieldinfo", "phases.status"),), [("success", 7), ("failed", 3), ("running", 1)]),
        ((("_fieldinfo", "phases.name"), ("status", "failed")),
         [("EXTRACT", 3), ("TRANSFORM", 2), ("LOAD", 1), ("SEND", 1)]),
        ((("_fieldinfo", "data.count"),), [(7, 1), ("7", 1)]),  # numbers before strings
        ((("_fieldinfo", "data.series.2021-06-01"),), [("#BOE.A", 1), ("#BOE.B", 1)]),
        ((("_fieldinfo", "end"), ("name", "DEMO")), [("2021-07-21T08:00:09.000Z", 1)]),
        ((("_fieldinfo", "runAs"), ("_filter", "name=BOE_RATES or name=FX_ECB")),
         [("alice", 1), ("bob", 1), ("com_walkfares", 1)]),
        ((("_fieldinfo", "_id"), ("name", "BOE_RATES")), [("x01", 1), ("x02", 1)]),
        ((("_fieldinfo", "data.nosuchfield"),), []),  # a missing path under data: none
        ((("_fieldinfo", "status"), ("name", "nobody")), []),
    ],
)  # fmt: skip
def test_fieldinfo(loaded: ExecutionStore, params: Params, expected: list[Any]) -> None:
    assert fieldinfo(loaded, *params) == expected


def test_fieldinfo_buckets_carry_the_filter_that_selects_them(loaded: ExecutionStore) -> None:
    for field in ("status", "name", "phases.status", "phases.name", "data.count", "runAs"):
        for extra in ((), (("status", "ne(success)"),), (("_search", "ecb"),)):
            buckets = loaded.fieldinfo(parse_query([("_fieldinfo", field), *extra]))
            assert buckets
            for bucket in buckets:
                assert bucket["filter"] == {field: bucket["_id"]}
                query = parse_query([*extra, ("_filter", json.dumps(bucket["filter"]))])
                assert loaded.list(query)[1] == bucket["count"], (field, extra, bucket)


def test_fieldinfo_in_another_environment(loaded: ExecutionStore) -> None:
    assert fieldinfo(loaded, ("_fieldinfo", "status"), env="staging") == [("failed", 1)]
    assert fieldinfo(loaded, ("_fieldinfo", "name"), env="nowhere") == []


# --- _aggregate ---------------------------------------------------------------------------------

BY_STATUS = {"$group": {"_id": "$status", "count": {"$sum": 1}}}


@pytest.mark.parametrize(
    ("stages", "params", "expected"),
    [
        # the platform's example: process executions grouped by status
        ([BY_STATUS], (),
         [{"_id": "failed", "count": 3}, {"_id": "running", "count": 1},
          {"_id": "success", "count": 5}, {"_id": "triggered", "count": 1},
          {"_id": "warning", "count": 1}]),
        ([BY_STATUS], (("name", "ECB_FX"),),
         [{"_id": "failed", "count": 2}, {"_id": "success", "count": 3}]),
        ([BY_STATUS, {"$sort": {"count": -1}}, {"$limit": 2}], (("_limit", "1"), ("_skip", "3")),
         [{"_id": "success", "count": 5}, {"_id": "failed", "count": 3}]),
        ([{"$match": {"phases.status": "failed"}}, {"$group": {"_id": None, "n": {"$count": {}}}}],
         (), [{"_id": None, "n": 3}]),
        ([{"$match": {"$or": [{"name": {"$regex": "^fx", "$options": "i"}}, {"data.count": 7}]}},
          {"$count": "runs"}], (), [{"runs": 2}]),
        ([{"$count": "failed"}], (("status", "failed"),), [{"failed": 3}]),
        ([{"$count": "n"}], (("_search", "crontab"),), [{"n": 9}]),
        # compound keys, sorted by count, ties by `_id` (descending, as the first key)
        ([{"$group": {"_id": {"name": "$name", "trigger": "$trigger"}, "n": {"$count": {}}}},
          {"$sort": {"n": -1}}], (),
         [{"_id": {"name": "ECB_FX", "trigger": "scheduled"}, "n": 5},
          {"_id": {"name": "DEMO", "trigger": "scheduled"}, "n": 3},
          {"_id": {"name": "FX_ECB", "trigger": "scheduled"}, "n": 1},
          {"_id": {"name": "BOE_RATES", "trigger": "subscription"}, "n": 1},
          {"_id": {"name": "BOE_RATES", "trigger": "manual"}, "n": 1}]),
        # a missing field is left out of an object key: a group of its own, before the others
        ([{"$group": {"_id": {"end": "$end"}, "n": {"$sum": 1}}}], (("name", "DEMO"),),
         [{"_id": {}, "n": 2}, {"_id": {"end": "2021-07-21T08:00:09.000Z"}, "n": 1}]),
        ([{"$group": {"_id": {"name": "$name", "trigger": "$trigger"}, "n": {"$sum": 1}}},
          {"$match": {"_id.name": "BOE_RATES"}}, {"$project": {"_id": 1}}], (),
         [{"_id": {"name": "BOE_RATES", "trigger": "manual"}},
          {"_id": {"name": "BOE_RATES", "trigger": "subscription"}}]),
        # min, max, first and last; documents enter in the `_sort` order
        ([{"$group": {"_id": "$name", "first": {"$first": "$_id"}, "last": {"$last": "$_id"},
                      "since": {"$min": "$start"}, "until": {"$max": "$end"}}}],
         (("_sort", "start"),),
         [{"_id": "BOE_RATES", "first": "x01", "last": "x02", "since": "2021-06-01T08:00:00.000Z",
           "until": "2021-06-01T08:00:02.000Z"},
          {"_id": "DEMO", "first": "e06", "last": "e08", "since": "2021-07-21T08:00:00.000Z",
           "until": "2021-07-21T08:00:09.000Z"},
          {"_id": "ECB_FX", "first": "e05", "last": "e04", "since": "2021-07-18T23:59:59.999Z",
           "until": "2021-07-24T00:00:30.000Z"},
          {"_id": "FX_ECB", "first": "e10", "last": "e10", "since": "2021-07-10T09:00:00.000Z",
           "until": "2021-07-10T09:00:01.000Z"}]),
        ([{"$group": {"_id": "$name", "newest": {"$first": "$_id"}, "end": {"$last": "$end"}}},
          {"$match": {"_id": "DEMO"}}], (),  # newest first by default: e08 and e07 share a start
         [{"_id": "DEMO", "newest": "e08", "end": "2021-07-21T08:00:09.000Z"}]),
        ([{"$group": {"_id": None, "total": {"$sum": "$data.count"},
                      "mean": {"$avg": "$data.count"}, "none": {"$avg": "$data.nosuch"},
                      "least": {"$min": "$data.nosuch"}, "twice": {"$sum": 2}}}], (),
         [{"_id": None, "total": 7, "mean": 7.0, "none": None, "least": None, "twice": 22}]),
        ([{"$group": {"_id": "$data.count", "n": {"$sum": 1}}}], (),
         [{"_id": None, "n": 9}, {"_id": 7, "n": 1}, {"_id": "7", "n": 1}]),
        ([{"$group": {"_id": "$data.series.2021-06-01", "n": {"$sum": 1}}},
          {"$match": {"_id": {"$ne": None}}}], (), [{"_id": ["#BOE.A", "#BOE.B"], "n": 1}]),
        # before the group: sort, cut; after it: match, sort, skip, project
        ([{"$sort": {"start": -1}}, {"$limit": 3}, {"$group": {"_id": "$name", "n": {"$sum": 1}}}],
         (), [{"_id": "DEMO", "n": 1}, {"_id": "ECB_FX", "n": 2}]),
        ([{"$sort": {"name": 1}}, {"$skip": 10}, {"$group": {"_id": "$name"}}], (),
         [{"_id": "FX_ECB"}]),
        ([{"$group": {"_id": "$name", "n": {"$sum": 1}}}, {"$match": {"n": {"$gte": 2}}},
          {"$sort": {"n": 1}}, {"$skip": 1}, {"$project": {"n": 1, "_id": 0}}], (),
         [{"n": 3}, {"n": 5}]),
        ([BY_STATUS, {"$match": {"count": 1}}, {"$count": "rare"}], (), [{"rare": 3}]),
        ([{"$group": {"_id": "$status"}}, {"$sort": {"_id": -1}}, {"$limit": 2}], (),
         [{"_id": "warning"}, {"_id": "triggered"}]),
        ([BY_STATUS], (("_search", "nowhere"),), []),
        ([BY_STATUS, {"$match": {"count": {"$gt": 100}}}], (), []),
    ],
)  # fmt: skip
def test_aggregate(
    loaded: ExecutionStore, stages: list[dict[str, Any]], params: Params, expected: list[Any]
) -> None:
    assert aggregate(loaded, stages, *params) == expected


def test_aggregate_in_another_environment(loaded: ExecutionStore) -> None:
    assert aggregate(loaded, [BY_STATUS], env="staging") == [{"_id": "failed", "count": 1}]
    assert aggregate(loaded, [BY_STATUS], env="nowhere") == []


#: the stores held to MongoDB's documented behaviour where mongomock departs from it (mongomock
#: answers an empty `$group` or `$count` with a row): SQLite, and a real server when given one
DOCUMENTED = ["sqlite", *(["mongo"] if MONGO_URI else [])]


@pytest.mark.parametrize("store", DOCUMENTED, indirect=True)
@pytest.mark.parametrize(
    "stages",
    [
        [{"$group": {"_id": None, "n": {"$sum": 1}}}],
        [{"$count": "n"}],
        [BY_STATUS, {"$match": {"count": 0}}, {"$count": "n"}],
    ],
)
def test_nothing_to_group_gives_nothing(loaded: ExecutionStore, stages: list[Any]) -> None:
    assert aggregate(loaded, stages, ("name", "nobody")) == []


def test_results_are_bounded(loaded: ExecutionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (
        "query.documents",
        "query.pipeline",
        "store.mongo",
        "store.sqlite.fields",
        "store.sqlite.aggregate",
    ):
        monkeypatch.setattr(f"procexec.engine.{module}.MAX_DISTINCT", 3)
    assert len(aggregate(loaded, [{"$group": {"_id": "$name"}}, {"$limit": 3}])) == 3
    with pytest.raises(Exception, match=r"^_aggregate: more than 3 results; add a \$limit"):
        aggregate(loaded, [{"$group": {"_id": "$name"}}])
    for field in ("name", "phases.status", "data.count", "trigger"):
        found = fieldinfo(loaded, ("_fieldinfo", field), ("name", "ne(ECB_FX)"))
        assert len(found) <= 3
    with pytest.raises(Exception, match=r"^_fieldinfo: more than 3 distinct values of 'status'"):
        fieldinfo(loaded, ("_fieldinfo", "status"))
    with pytest.raises(Exception, match=r"^_fieldinfo: more than 3 distinct values of 'phases.n"):
        fieldinfo(loaded, ("_fieldinfo", "phases.name"))


# --- MongoDB's documented behaviour where mongomock departs from it: SQLite alone --------------

ODD: list[dict[str, Any]] = [
    {"_id": "o1", "data": {"items": [{"k": 1}, {"k": 2}, "odd", {"j": 0}], "v": ["b"]}},
    {"_id": "o2", "data": {"items": {"k": "one"}, "v": ["a", "z"]}},
    {"_id": "o3", "data": {"items": [], "v": []}},
    {"_id": "o4", "data": {"v": None}},
    {"_id": "o5", "data": {"v": "m"}},
    {"_id": "o6", "data": {"v": 5}},
    {"_id": "o7", "data": {"v": ["c", 1]}},
    {"_id": "o8", "data": {"v": {"k": 1}}},
    {"_id": "o9", "data": {"v": True}},
    {"_id": "o10", "data": {}},
]


@pytest.fixture
def odd(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "odd.db")
    for doc in ODD:
        store.insert({**doc, "environment": PROD, "start": "2021-07-01T00:00:00.000Z"})
    return store


def test_a_path_through_an_array_is_the_array_of_what_its_objects_hold(odd: SQLiteStore) -> None:
    rows = aggregate(odd, [{"$group": {"_id": "$_id", "k": {"$first": "$data.items.k"}}}])
    assert {row["_id"]: row["k"] for row in rows} == {
        "o1": [1, 2], "o2": "one", "o3": [], "o4": None, "o5": None, "o6": None, "o7": None,
        "o8": None, "o9": None, "o10": None,
    }  # fmt: skip


def test_min_and_max_follow_mongodbs_order_of_types(odd: SQLiteStore) -> None:
    rows = aggregate(odd, [{"$group": {"_id": None, "least": {"$min": "$data.v"},
                                       "most": {"$max": "$data.v"}}}])  # fmt: skip
    assert rows == [{"_id": None, "least": 5, "most": True}]
    without = aggregate(odd, [{"$match": {"_id": {"$nin": ["o5", "o6", "o9"]}}},
                              {"$group": {"_id": None, "least": {"$min": "$data.v"},
                                          "most": {"$max": "$data.v"}}}])  # fmt: skip
    assert without == [{"_id": None, "least": {"k": 1}, "most": ["c", 1]}]


def test_sort_orders_arrays_by_their_least_or_greatest_item(odd: SQLiteStore) -> None:
    group = {"$group": {"_id": "$_id", "v": {"$first": "$data.v"}}}
    ascending = [row["_id"] for row in aggregate(odd, [group, {"$sort": {"v": 1}}])]
    # [] before null and missing; ["c", 1] by 1; ["a", "z"] by "a"; {"k": 1} an object
    assert ascending == ["o3", "o10", "o4", "o7", "o6", "o2", "o1", "o5", "o8", "o9"]
    descending = [row["_id"] for row in aggregate(odd, [group, {"$sort": {"v": -1}}])]
    assert descending == ["o9", "o8", "o2", "o5", "o7", "o1", "o6", "o4", "o10", "o3"]


def test_first_and_last_of_a_missing_field_are_null(odd: SQLiteStore) -> None:
    """Not the next document's value (as mongomock answers)."""
    stages = [{"$group": {"_id": None, "first": {"$first": "$data.items"},
                          "last": {"$last": "$data.items"}}}]  # fmt: skip
    assert aggregate(odd, stages, ("_sort", "_id")) == [
        {"_id": None, "first": [{"k": 1}, {"k": 2}, "odd", {"j": 0}], "last": None}
    ]
    assert aggregate(odd, stages, ("_sort", "-_id")) == [
        {"_id": None, "first": None, "last": [{"k": 1}, {"k": 2}, "odd", {"j": 0}]}
    ]


def test_nothing_to_group_gives_nothing_on_sqlite(odd: SQLiteStore) -> None:
    for stages in (
        [{"$group": {"_id": None, "n": {"$sum": 1}}}],
        [{"$count": "n"}],
        [{"$group": {"_id": "$data.v"}}, {"$match": {"_id": "nothing"}}, {"$count": "n"}],
    ):
        assert aggregate(odd, stages, ("_id", "nobody")) == []


def test_the_mongodb_pipeline_is_rebuilt_from_the_checked_stages() -> None:
    from procexec.engine.store.mongo_query import compile_pipeline

    query = parse_query(
        [
            ("_aggregate", json.dumps([
                {"$match": {"status": {"$in": ["failed"]}}},
                {"$group": {"_id": {"n": "$name"}, "c": {"$count": {}}, "m": {"$max": "$end"}}},
                {"$project": {"c": 1, "_id": 0}},
            ])),
        ]
    )  # fmt: skip
    assert query.aggregate is not None
    assert compile_pipeline(query.aggregate) == [
        {"$match": {"status": {"$in": ["failed"]}}},
        {"$group": {"_id": {"n": "$name"}, "c": {"$sum": 1}, "m": {"$max": "$end"}}},
        {"$sort": {"_id": 1}},
        {"$project": {"_id": 0, "c": 1}},
    ]
