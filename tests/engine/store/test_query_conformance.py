"""The query language on every store: `_filter`, JSON filters, `_search`, `_distinct`, paths,
projections, deep pages. Each case runs on SQLite and on MongoDB (mongomock without a server),
and both must give exactly these rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procexec.engine.query import Query, parse_query
from procexec.engine.store.base import ExecutionStore, Update
from tests.engine.store.documents import ALL_BY_ID, BY_ID, NEWEST_FIRST, ORDER, PROD


def ids(store: ExecutionStore, *params: tuple[str, str], environment: str = PROD) -> list[str]:
    rows, total = store.list(parse_query(params, environment))
    assert total == len(rows), "without _limit/_skip every match is listed"
    return [row["_id"] for row in rows]


def only(wanted: set[str]) -> list[str]:
    """The production ids among `wanted`, in the default order."""
    return [execution_id for execution_id in ORDER if execution_id in wanted]


# --- _filter expressions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(status=failed or status=running) and name=ECB_FX", ["e04", "e02"]),
        ("status=failed or status=running and name=DEMO", ["e04", "e07", "e06", "e02"]),
        ("not status=success", only({"e04", "e08", "e07", "e06", "e02", "x01"})),
        ("not (name=ECB_FX or name=DEMO)", only({"e10", "x01", "x02"})),
        ("name!=ECB_FX and name!=DEMO", only({"e10", "x01", "x02"})),
        ("end=null", only({"e08", "e07", "x02"})),
        ("end!=null and start>=2021-07-22", ["e04", "e03"]),
        ("start>2021-07-19 and start<2021-07-22", ["e06", "e02"]),
        ("start=2021-07-22 or start<=2021-06-01", ["e08", "e07", "x01"]),
        ("start=range(2021-07-19,2021-07-23) and status=in(failed,running)", ["e07", "e06", "e02"]),
        ("phases.status=failed and not phases.name=LOAD", ["e04", "e02"]),
        (
            "phases.name=regex(^TR) or trigger=manual",
            only({"e03", "e06", "e02", "e01", "e05", "x01"}),
        ),
        ('message="Completed Successfully"', ["x02"]),
        ('reason="crontab(DEMO)" and not status=triggered', ["e07", "e06"]),
        ("runAs>=alice and runAs<=bob", ["x02", "x01"]),
        ("loaderMessage=regex(for 2021-07-1[89]$)", ["e01", "e05"]),
    ],
)
def test_filter_expressions(loaded: ExecutionStore, expression: str, expected: list[str]) -> None:
    assert ids(loaded, ("_filter", expression)) == expected


def test_filter_is_anded_with_parameters_and_search(loaded: ExecutionStore) -> None:
    params = (("name", "ECB_FX"), ("_filter", "status=failed or status=success"))
    assert ids(loaded, *params) == ["e04", "e03", "e02", "e01", "e05"]
    assert ids(loaded, *params, ("_search", "-transform")) == ["e04"]


# --- JSON filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            '{"$or": [{"status": "failed"}, {"status": "running"}], "name": "ECB_FX"}',
            ["e04", "e02"],
        ),
        ('{"$nor": [{"name": "ECB_FX"}, {"name": "DEMO"}]}', only({"e10", "x01", "x02"})),
        ('{"status": {"$in": ["failed", "running"]}}', ["e04", "e07", "e06", "e02"]),
        ('{"status": {"$nin": ["success", "failed", "triggered"]}}', ["e07", "x01"]),
        ('{"end": {"$exists": false}}', only({"e08", "e07", "x02"})),
        ('{"loaderMessage": {"$exists": true}}', ["e03", "e01", "e05", "e10"]),
        ('{"phases.end": {"$exists": false}}', only({"e08", "e07", "x02"})),
        ('{"phases.name": {"$exists": true}}', only(set(NEWEST_FIRST) - {"e08"} | {"x01"})),
        ('{"name": {"$regex": "^ecb", "$options": "i"}}', ["e04", "e03", "e02", "e01", "e05"]),
        ('{"name": {"$not": {"$regex": "ECB"}}}', only({"e08", "e07", "e06", "x01", "x02"})),
        ('{"start": {"$gte": "2021-07-22", "$lt": "2021-07-23"}}', ["e08", "e07"]),
        ('{"end": null}', only({"e08", "e07", "x02"})),
        ('{"end": {"$ne": null}, "runAs": {"$ne": "com_walkfares"}}', ["x01"]),
        ('{"end": {"$gte": null}}', only({"e08", "e07", "x02"})),
        ('{"end": {"$gt": null}}', []),
        ('{"status": {"$in": []}}', []),
        ('{"status": {"$nin": []}}', ORDER),
        ("{}", ORDER),
        # numbers compare with numbers only
        ('{"data.count": 7}', ["x01"]),
        ('{"data.count": "7"}', ["x02"]),
        ('{"data.count": {"$gte": 7}}', ["x01"]),
        ('{"data.count": {"$lt": 100}}', ["x01"]),
        ('{"data.ratio": {"$gt": 0.25, "$lt": 1}}', ["x01"]),
        ('{"data.count": {"$in": [7, "8"]}}', ["x01"]),
        ('{"name": {"$gt": 5}}', []),
        ('{"data.count": {"$ne": 7}}', only(set(ORDER) - {"x01"})),
        # arrays: a condition holds when an element does
        ('{"data.series.2021-06-01": "#BOE.B"}', ["x01"]),
        ('{"data.series.2021-06-01": {"$regex": "A$"}}', ["x01"]),
        ('{"data.series.2021-06-02": {"$exists": true}}', ["x02"]),
        ('{"phases.log": {"$regex": "refused"}}', ["x01"]),
        ('{"phases.0.name": "LOAD"}', ["e10"]),
        ('{"phases.3.status": "failed"}', ["e06"]),
        ('{"phases.1.name": {"$exists": true}}', only({"e03", "e06", "e02", "e01", "e05"})),
    ],
)
def test_json_filters(loaded: ExecutionStore, spec: str, expected: list[str]) -> None:
    assert ids(loaded, ("_filter", spec)) == expected


@pytest.mark.parametrize(
    ("relaxed", "strict", "expected"),
    [
        ("{_id: /^x0/}", '{"_id": {"$regex": "^x0"}}', ["x02", "x01"]),
        ("{name:/^ecb/i}", '{"name": {"$regex": "^ecb", "$options": "i"}}',
         ["e04", "e03", "e02", "e01", "e05"]),
        ("{name: {$regex: /^ecb/i}}", '{"name": {"$regex": "^ecb", "$options": "i"}}',
         ["e04", "e03", "e02", "e01", "e05"]),
        ("{name: {$not: /ECB/}}", '{"name": {"$not": {"$regex": "ECB"}}}',
         only({"e08", "e07", "e06", "x01", "x02"})),
        ('{$or: [{status: "failed"}, {status: "running"}], name: "ECB_FX"}',
         '{"$or": [{"status": "failed"}, {"status": "running"}], "name": "ECB_FX"}',
         ["e04", "e02"]),
        ("{phases.log: /Refused/i}", '{"phases.log": {"$regex": "Refused", "$options": "i"}}',
         ["x01"]),
        ("{data.series.2021-06-01: /A$/}", '{"data.series.2021-06-01": {"$regex": "A$"}}', ["x01"]),
        ("{message: /café closed/i}", '{"message": {"$regex": "café closed", "$options": "i"}}',
         ["x01"]),
        ("{reason: /by \\/?alice$/, data.count: 7}",
         '{"reason": {"$regex": "by /?alice$"}, "data.count": 7}', ["x01"]),
        ("{end: {$exists: false}, phases.name: /^[A-Z]/}",
         '{"end": {"$exists": false}, "phases.name": {"$regex": "^[A-Z]"}}',
         None),
    ],
)  # fmt: skip
def test_relaxed_json_filters(
    loaded: ExecutionStore, relaxed: str, strict: str, expected: list[str] | None
) -> None:
    """The platform's relaxed `_filter` (`{_id:/AB/}`) finds what its strict JSON finds."""
    found = ids(loaded, ("_filter", relaxed))
    assert found == ids(loaded, ("_filter", strict))
    assert found == expected if expected is not None else found


# --- _search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ECB", ["e04", "e03", "e02", "e01", "e05", "e10", "x02"]),  # FX_ECB, and a reason
        ("ecb_fx", ["e04", "e03", "e02", "e01", "e05", "x02"]),
        ("fx ecb", ["e04", "e03", "e02", "e01", "e05", "e10", "x02"]),
        ('"fx ecb"', ["e10"]),  # a phrase: the words in this order
        ("demo|boe", ["e08", "e07", "e06", "x02", "x01"]),
        ("-ecb", only({"e08", "e07", "e06", "x01"})),
        ("ecb -failed", ["e03", "e01", "e05", "e10", "x02"]),
        ("(load|transform) failed", ["e06", "e02"]),
        ("e03", ["e03"]),  # the id
        ("crontab -(ecb fx)", ["e08", "e07", "e06"]),
        ('"info extract running"', ["e07"]),  # a log line
        ('"extract running"', ["e07"]),
        ('"running 2021"', []),  # a phrase never runs from one log line into the next
        ("cafe", ["x01"]),  # accents do not matter
        ("CAFÉ unicode NAÏVE", ["x01"]),
        ("refused", ["x01"]),
        ("timeout|refused", ["x01"]),
        ("alice", ["x01"]),  # the reason
        ("subscription", ["x02"]),
        ("nowhere", []),
        ("-nowhere", ORDER),
        ("-e03 -e04 e0", []),
        ("e04 | -ecb", only({"e04", "e08", "e07", "e06", "x01"})),
        ("-(ecb | demo)", ["x01"]),
    ],
)
def test_search(loaded: ExecutionStore, text: str, expected: list[str]) -> None:
    assert ids(loaded, ("_search", text)) == expected


def test_search_is_scoped_to_the_environment(loaded: ExecutionStore) -> None:
    assert ids(loaded, ("_search", "e09")) == []
    assert ids(loaded, ("_search", "e09"), environment="staging") == ["e09"]
    assert ids(loaded, ("_search", "ecb -e09"), environment="staging") == []


def test_search_with_filters_page_and_order(loaded: ExecutionStore) -> None:
    rows, total = loaded.list(
        parse_query([("_search", "ecb"), ("_sort", "start"), ("_skip", "1"), ("_limit", "2")])
    )
    assert [row["_id"] for row in rows] == ["e10", "e05"]
    assert total == 7
    assert ids(loaded, ("_search", "ecb"), ("status", "failed")) == ["e04", "e02"]


def test_search_follows_updates(store: ExecutionStore) -> None:
    doc = copy.deepcopy(BY_ID["e08"])
    store.insert(doc)
    assert ids(store, ("_search", "triggered")) == ["e08"]
    assert store.update(
        "e08",
        Update(
            set={"status": "running", "message": "Running EXTRACT"},
            push={"phases": [{"name": "EXTRACT", "status": "running", "log": ["fetching quux"]}]},
        ),
    )
    assert ids(store, ("_search", "triggered")) == []
    assert ids(store, ("_search", "running extract")) == ["e08"]
    assert ids(store, ("_search", "quux")) == ["e08"]
    assert store.update("e08", Update(push={"phases.0.log": ["then zork", "and blorp"]}))
    assert ids(store, ("_search", '"then zork" blorp')) == ["e08"]
    # the recorder rewrites a long log whole (head, marker, tail)
    assert store.update("e08", Update(set={"phases.0.log": ["first", "... dropped ...", "last"]}))
    assert ids(store, ("_search", "zork")) == []
    assert ids(store, ("_search", "dropped")) == ["e08"]
    assert store.update("e08", Update(set={"phases.0.log.2": "final"}))
    assert ids(store, ("_search", "last")) == []
    assert ids(store, ("_search", "final")) == ["e08"]
    assert store.update("e08", Update(set={"phases.0": {"name": "EXTRACT", "log": ["redone"]}}))
    assert ids(store, ("_search", "first|final")) == []
    assert ids(store, ("_search", "redone")) == ["e08"]
    assert store.update("e08", Update(set={"reason": "Manually triggered by zed"}))
    assert ids(store, ("_search", "zed")) == ["e08"]
    assert ids(store, ("_search", "crontab")) == []


# --- _distinct --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("_distinct", "name"),), ["BOE_RATES", "DEMO", "ECB_FX", "FX_ECB"]),
        ((("_distinct", "status"), ("name", "ECB_FX")), ["failed", "success"]),
        ((("_distinct", "status"), ("_filter", "name=DEMO or name=BOE_RATES")),
         ["failed", "running", "success", "triggered", "warning"]),
        ((("_distinct", "phases.name"), ("status", "failed")),
         ["EXTRACT", "LOAD", "SEND", "TRANSFORM"]),
        ((("_distinct", "trigger"),), ["manual", "scheduled", "subscription"]),
        ((("_distinct", "end"), ("name", "DEMO")), ["2021-07-21T08:00:09.000Z"]),
        ((("_distinct", "_id"), ("_search", "ecb -crontab")), ["x02"]),
        ((("_distinct", "data.series.2021-06-01"),), ["#BOE.A", "#BOE.B"]),
        ((("_distinct", "data.count"),), [7, "7"]),
        ((("_distinct", "phases.log"), ("_id", "x01")),
         ["2021-06-01T08:00:00.000000000Z[UTC] info Connection refused by host",
          "2021-06-01T08:00:01.000000000Z[UTC] warning retrying after timeout"]),
        ((("_distinct", "data.nosuchfield"),), []),  # a missing path under data: none
        ((("_distinct", "name"), ("name", "nobody")), []),
    ],
)  # fmt: skip
def test_distinct(
    loaded: ExecutionStore, params: tuple[tuple[str, str], ...], expected: list[Any]
) -> None:
    assert loaded.distinct(parse_query(params)) == expected


def test_distinct_in_another_environment(loaded: ExecutionStore) -> None:
    assert loaded.distinct(parse_query([("_distinct", "name")], "staging")) == ["ECB_FX"]
    assert loaded.distinct(parse_query([("_distinct", "name")], "nowhere")) == []


def test_distinct_follows_status_changes(loaded: ExecutionStore) -> None:
    query = parse_query([("_distinct", "status"), ("name", "DEMO")])
    assert loaded.distinct(query) == ["failed", "running", "triggered"]
    assert loaded.update("e08", Update(set={"status": "failed"}))
    assert loaded.update("e07", Update(set={"status": "success"}))
    assert loaded.distinct(query) == ["failed", "success"]


# --- projections ------------------------------------------------------------------------------


def test_exclusion_projection(loaded: ExecutionStore) -> None:
    rows, _ = loaded.list(
        parse_query([("_project", "-phases,-data,-reason"), ("_id", "in(e01,x02)")])
    )
    for row in rows:
        full = ALL_BY_ID[row["_id"]]
        assert row == {k: v for k, v in full.items() if k not in ("phases", "data", "reason")}
    rows, _ = loaded.list(
        parse_query([("_project", '{"phases.log": 0, "_id": 0}'), ("_id", "e02")])
    )
    expected = copy.deepcopy(BY_ID["e02"])
    for phase in expected["phases"]:
        del phase["log"]
    assert rows == [expected]
    assert list(rows[0]) == list(BY_ID["e02"])  # the document's order


def test_projection_of_missing_and_nested_fields(loaded: ExecutionStore) -> None:
    rows, _ = loaded.list(
        parse_query([("_project", "data.count,phases.status"), ("_id", "in(x01,x02)")])
    )
    assert rows == [
        {"_id": "x02", "phases": [], "data": {"count": "7"}},
        {"_id": "x01", "phases": [{"status": "success"}], "data": {"count": 7}},
    ]


# --- deep pages ---------------------------------------------------------------------------------


def _many(count: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for number in range(count):
        day = 1 + number % 28
        docs.append(
            {
                "_id": f"m{number:05d}",
                "name": ("ECB_FX", "DEMO", "BOE")[number % 3],
                "environment": PROD,
                "status": ("success", "failed", "running", "success")[number % 4],
                # several runs share a start: the order among them is by id
                "start": f"2021-{1 + number % 12:02d}-{day:02d}T{number % 24:02d}:00:00.000Z",
                "phases": [],
            }
        )
    return docs


@pytest.mark.parametrize(
    "params",
    [
        (),
        (("status", "success"),),
        (("status", "in(failed,running)"),),
        (("_filter", "not status=running"),),
        (("_sort", "start"),),
        (("_sort", "start"), ("status", "failed")),
        (("_sort", "-start,-_id"),),
        (("name", "DEMO"),),
    ],
)
def test_deep_skip_gives_the_same_rows_as_walking_the_list(
    store: ExecutionStore, params: tuple[tuple[str, str], ...]
) -> None:
    docs = _many(2600)
    for doc in docs:
        store.insert(doc)
    everything, total = store.list(parse_query([*params, ("_limit", "10000")]))
    assert total == len(everything) > 600
    for skip in (0, 999, 1000, 1001, total // 2, total - 3, total, total + 5):
        rows, page_total = store.list(parse_query([*params, ("_skip", str(skip)), ("_limit", "7")]))
        assert page_total == total
        assert [row["_id"] for row in rows] == [row["_id"] for row in everything[skip : skip + 7]]


def test_totals_follow_inserts_and_status_changes(store: ExecutionStore) -> None:
    def total(*params: tuple[str, str]) -> int:
        return store.list(parse_query([*params, ("_limit", "0")]))[1]

    for doc in _many(40):
        store.insert(doc)
    assert (total(), total(("status", "success")), total(("name", "DEMO"))) == (40, 20, 13)
    assert store.update("m00000", Update(set={"status": "failed"}))
    assert (
        store.update("m00001", Update(set={"status": "failed"}, expect_status=frozenset({"x"})))
        is False
    )
    assert (total(("status", "success")), total(("status", "failed"))) == (19, 11)
    assert total(("_filter", "status=failed and name=ECB_FX")) == 4
    assert total(("status", "failed"), ("start", "range(2021-01-01,2021-01-31)")) == 1  # m00000


def test_limit_zero_gives_the_total_only(loaded: ExecutionStore) -> None:
    rows, total = loaded.list(Query(limit=0))
    assert (rows, total) == ([], len(ORDER))
