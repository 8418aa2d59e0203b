"""What a query may hold, answered alike by both stores: an `in` of `MAX_IN_VALUES` values, a
filter nested to `MAX_FILTER_DEPTH` levels of `not` or `$nor`; and the read's deadline
(`engine.deadline`) looked at by the Python work a store does on its rows.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from procexec.engine import deadline
from procexec.engine.errors import BadRequest, QueryTimeout
from procexec.engine.limits import MAX_IN_VALUES
from procexec.engine.query import parse_query
from procexec.engine.query.tree import MAX_FILTER_DEPTH
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore

PROD = "production"


def _doc(number: int) -> dict[str, Any]:
    return {
        "_id": f"b{number:04d}",
        "service": "ETL",
        "name": f"P{number % 7}",
        "environment": PROD,
        "trigger": "manual",
        "status": ("success", "failed")[number % 2],
        "start": f"2024-01-{1 + number % 28:02d}T00:00:00.000Z",
        "phases": [{"name": "EXTRACT", "status": "success", "log": [f"line {number}"]}],
        "data": {"x": number, "tag": f"t{number}", "deep": {"er": {"still": number}}},
    }


DOCS = [_doc(number) for number in range(60)]


@pytest.fixture
def filled(store: ExecutionStore) -> ExecutionStore:
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    return store


def ids(store: ExecutionStore, params: list[tuple[str, str]]) -> list[str]:
    rows, _ = store.list(parse_query([*params, ("_limit", "-1"), ("_sort", "_id")]))
    return [row["_id"] for row in rows]


def expected(keep: Any) -> list[str]:
    return sorted(doc["_id"] for doc in DOCS if keep(doc))


# --- in() of MAX_IN_VALUES values -----------------------------------------------------------


def test_an_in_of_the_most_values_on_a_path_is_answered(filled: ExecutionStore) -> None:
    """SQLite once compared each value in its own term of one OR: past 500 values, deeper than
    its expression tree may go (a 503)."""
    numbers = [*range(0, 2 * MAX_IN_VALUES, 2)][:MAX_IN_VALUES]
    assert len(numbers) == MAX_IN_VALUES
    values = ",".join(map(str, numbers))
    # `data.x=in(…)` compares texts: the stored numbers are not among them
    assert ids(filled, [("data.x", f"in({values})")]) == []
    tags = ",".join(f"t{n}" for n in numbers)
    assert ids(filled, [("data.tag", f"in({tags})")]) == expected(lambda d: d["data"]["x"] % 2 == 0)
    spec = {"data.x": {"$in": numbers}}
    assert ids(filled, [("_filter", json.dumps(spec))]) == expected(
        lambda d: d["data"]["x"] % 2 == 0
    )
    spec = {"data.deep.er.still": {"$nin": [*numbers[:-1], None]}}
    assert ids(filled, [("_filter", json.dumps(spec))]) == expected(
        lambda d: d["data"]["x"] % 2 == 1
    )


def test_an_in_of_the_most_values_on_a_column_is_answered(filled: ExecutionStore) -> None:
    names = ",".join([*(f"Q{n}" for n in range(MAX_IN_VALUES - 2)), "P1", "P3"])
    assert ids(filled, [("name", f"in({names})")]) == expected(lambda d: d["name"] in ("P1", "P3"))
    spec = {"_id": {"$in": [f"b{n:04d}" for n in range(MAX_IN_VALUES)]}}
    assert ids(filled, [("_filter", json.dumps(spec))]) == expected(lambda d: True)


def test_an_in_of_one_value_more_is_refused_naming_the_limit() -> None:
    values = ",".join(map(str, range(MAX_IN_VALUES + 1)))
    with pytest.raises(BadRequest, match=r"^data\.x: in\(\) lists 1001 values, at most 1000"):
        parse_query([("data.x", f"in({values})")])
    spec = json.dumps({"data.x": {"$nin": list(range(MAX_IN_VALUES + 1))}})
    with pytest.raises(BadRequest, match=r"^_filter: data\.x: '\$nin' lists 1001 values"):
        parse_query([("_filter", spec)])


# --- nesting to the documented limit ---------------------------------------------------------


@pytest.mark.parametrize("depth", [15, MAX_FILTER_DEPTH])
def test_nots_nested_to_the_limit_are_answered(filled: ExecutionStore, depth: int) -> None:
    """SQLite's parser once ran out of stack at 15 levels (a 503)."""
    odd = depth % 2 == 1
    found = ids(filled, [("_filter", "not " * depth + "data.tag=in(t1,t2,t3)")])
    assert found == expected(lambda d: (d["data"]["x"] in (1, 2, 3)) != odd)


@pytest.mark.parametrize("depth", [15, MAX_FILTER_DEPTH])
def test_nors_nested_to_the_limit_are_answered(filled: ExecutionStore, depth: int) -> None:
    spec: dict[str, Any] = {"data.deep.er.still": {"$gt": 29}}
    for _ in range(depth):
        spec = {"$nor": [spec, {"phases.log": "nothing"}]}
    odd = depth % 2 == 1
    found = ids(filled, [("_filter", json.dumps(spec))])
    assert found == expected(lambda d: (d["data"]["x"] > 29) != odd)


def test_what_sqlite_cannot_compile_is_a_bad_request(tmp_path: Any) -> None:
    """Past what its parser takes (ANDs and ORs alternating 20 levels over deep paths), the
    store's refusal is the query's fault: a 400, never a 503."""
    store = SQLiteStore(tmp_path / "x.db")
    spec: dict[str, Any] = {"data.a.b.c.d.e.f": 1}
    for level in range(MAX_FILTER_DEPTH - 1):
        spec = {("$and" if level % 2 else "$or"): [spec, {"phases.0.log.1": "x"}]}
    with pytest.raises(BadRequest, match=r"^query: too large or too deep for the SQLite store"):
        store.list(parse_query([("_filter", json.dumps(spec))]))
    store.close()


# --- the read's deadline over the Python work on rows ----------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        [("_distinct", "phases.log")],
        [("_distinct", "data.tag")],
        [("_fieldinfo", "data.tag")],
        [("_fieldinfo", "phases.status")],
        [("_aggregate", '[{"$group": {"_id": "$data.tag", "n": {"$sum": 1}}}]')],
        [("_project", "name,data.x")],
    ],
    ids=["distinct-log", "distinct", "fieldinfo", "fieldinfo-phases", "aggregate", "project"],
)
def test_the_work_on_rows_stops_at_the_reads_deadline(
    filled: ExecutionStore, params: list[tuple[str, str]]
) -> None:
    """A read whose deadline passed while the store answered stops in the Python work after,
    a `QueryTimeout` (503) as a statement stopped; within it, the same read answers."""
    query = parse_query([*params, ("_limit", "-1")])
    read = {
        "_distinct": filled.distinct,
        "_fieldinfo": filled.fieldinfo,
        "_aggregate": filled.aggregate,
        "_project": filled.list,
    }[params[0][0]]
    with deadline.reading(60.0):
        assert read(query)
    with deadline.reading(1.0, started=time.monotonic() - 2), pytest.raises(QueryTimeout):
        read(query)
    assert read(query)  # outside any read: no deadline
