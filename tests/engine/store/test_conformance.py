"""One conformance suite for every store backend: the same calls must give the same results.

Queries are built with `engine.query.parse_query`, as the list call builds them, so the parser
and each backend's compiler are held together to the documented query language.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.query import And, Condition, Not, Or, Query, parse_query
from procexec.engine.store.base import META_KEYS, ExecutionStore, Observation, TokenRecord, Update
from tests.engine.store.documents import BY_ID, DOCS, NEWEST_FIRST, PROD, execution


@pytest.fixture
def loaded(store: ExecutionStore) -> ExecutionStore:
    for number, doc in enumerate(DOCS):
        store.insert(
            copy.deepcopy(doc),
            meta={"worker": f"w{number}", "heartbeat": doc["start"], "input": {"n": number}},
        )
    return store


def run(
    store: ExecutionStore, *params: tuple[str, str], environment: str = PROD
) -> tuple[list[dict[str, Any]], int]:
    return store.list(parse_query(params, environment))


def ids(store: ExecutionStore, *params: tuple[str, str], environment: str = PROD) -> list[str]:
    rows, total = run(store, *params, environment=environment)
    assert total == len(rows), "a query without _limit/_skip returns every match"
    return [row["_id"] for row in rows]


# --- insert, get, hidden meta -----------------------------------------------------------


def test_get_returns_the_inserted_document_exactly(loaded: ExecutionStore) -> None:
    for doc in DOCS:
        assert loaded.get(doc["_id"]) == doc
    assert loaded.get("nope") is None


def test_get_with_environment_filter(loaded: ExecutionStore) -> None:
    assert loaded.get("e09", environment="staging") == BY_ID["e09"]
    assert loaded.get("e09", environment=PROD) is None
    assert loaded.get("e01", environment=PROD) == BY_ID["e01"]
    assert loaded.get("e01", environment="staging") is None


def test_meta_is_kept_beside_the_document_and_never_served(loaded: ExecutionStore) -> None:
    assert loaded.get_meta("e03") == {
        "worker": "w2",
        "heartbeat": "2021-07-23T23:59:59.999Z",
        "input": {"n": 2},
        "chain": None,
        "dispatched": None,
        "due": None,
        "recoveries": None,
        "waiting": None,
    }
    assert loaded.get_meta("nope") == {}
    hidden = {*META_KEYS, "_meta"}
    doc = loaded.get("e03")
    assert doc is not None
    assert hidden.isdisjoint(doc)
    rows, _ = run(loaded, ("_limit", "-1"))
    assert [row["_id"] for row in rows] == NEWEST_FIRST
    for row in rows:
        assert hidden.isdisjoint(row)
        assert row == BY_ID[row["_id"]]


def test_insert_without_meta_has_empty_meta(store: ExecutionStore) -> None:
    doc = execution("solo", "DEMO", "triggered", "2021-07-01T00:00:00.000Z")
    store.insert(copy.deepcopy(doc))
    assert store.get_meta("solo") == {
        "worker": None,
        "heartbeat": None,
        "input": None,
        "chain": None,
        "dispatched": None,
        "due": None,
        "recoveries": None,
        "waiting": None,
    }
    assert store.get("solo") == doc


def test_projection_never_reveals_meta(loaded: ExecutionStore) -> None:
    """`_project=_meta` is refused by the query language (no field of the schema); a query built
    with it all the same gets nothing of it from either store."""
    with pytest.raises(BadRequest, match="'_meta' is not a field of an execution"):
        run(loaded, ("_id", "e01"), ("_project", "_meta,name"))
    one = Condition("_id", "eq", "e01")
    rows, total = loaded.list(Query(environment=PROD, where=one, project=("_meta", "name")))
    assert total == 1
    assert rows == [{"_id": "e01", "name": "ECB_FX"}]
    rows, _ = loaded.list(Query(environment=PROD, where=one, project=("_meta.input",)))
    assert rows == [{"_id": "e01"}]


# --- update ---------------------------------------------------------------------------


def test_update_set_push_and_meta(store: ExecutionStore) -> None:
    doc = execution("u1", "DEMO", "triggered", "2021-07-01T16:30:07.858Z")
    store.insert(copy.deepcopy(doc), meta={"input": {"sleep": 0}})

    assert store.update(
        "u1",
        Update(
            set={"status": "running", "message": "Running"},
            meta={"worker": "w1", "heartbeat": "2021-07-01T16:30:08.000Z"},
        ),
    )
    first = {"name": "EXTRACT", "start": "2021-07-01T16:30:10.295Z", "status": "running",
             "message": "Running EXTRACT", "log": []}  # fmt: skip
    assert store.update("u1", Update(push={"phases": [first]}))
    assert store.update("u1", Update(push={"phases.0.log": ["one", "two"]}))
    assert store.update(
        "u1",
        Update(
            set={
                "phases.0.status": "success",
                "phases.0.message": "Completed EXTRACT",
                "phases.0.end": "2021-07-01T16:30:13.390Z",
            },
            push={"phases.0.log": ["three"]},
        ),
    )
    second = {"name": "LOAD", "start": "2021-07-01T16:30:17.322Z", "status": "running",
              "message": "Running LOAD", "log": []}  # fmt: skip
    assert store.update("u1", Update(set={"message": "Running LOAD"}, push={"phases": [second]}))
    assert store.update("u1", Update(push={"phases.1.log": ["a"]}))
    assert store.update("u1", Update(push={"phases.1.log": ["b", "c"]}))
    assert store.update(
        "u1",
        Update(
            set={
                "status": "success",
                "end": "2021-07-01T16:30:24.445Z",
                "data.series.2021-07-01": ["#ECB_FX.EURUSD:SPOT"],
                "data.curves": {},
            }
        ),
    )

    expected = copy.deepcopy(doc)
    expected.update(status="success", message="Running LOAD", end="2021-07-01T16:30:24.445Z")
    expected["phases"] = [
        {**first, "status": "success", "message": "Completed EXTRACT",
         "log": ["one", "two", "three"], "end": "2021-07-01T16:30:13.390Z"},
        {**second, "log": ["a", "b", "c"]},
    ]  # fmt: skip
    expected["data"] = {"series": {"2021-07-01": ["#ECB_FX.EURUSD:SPOT"]}, "curves": {}}
    assert store.get("u1") == expected
    assert store.get_meta("u1") == {
        "worker": "w1",
        "heartbeat": "2021-07-01T16:30:08.000Z",
        "input": {"sleep": 0},
        "chain": None,
        "dispatched": None,
        "due": None,
        "recoveries": None,
        "waiting": None,
    }


def test_update_of_an_unknown_document_is_false(store: ExecutionStore) -> None:
    assert store.update("nope", Update(set={"status": "failed"})) is False
    assert (
        store.update("nope", Update(set={"status": "failed"}, expect_status=frozenset({"running"})))
        is False
    )
    assert store.get("nope") is None


def test_conditional_update_changes_nothing_when_the_status_differs(
    loaded: ExecutionStore,
) -> None:
    before, meta_before = loaded.get("e07"), loaded.get_meta("e07")
    assert before is not None and before["status"] == "running"
    refused = Update(
        set={"status": "running", "message": "claimed twice"},
        push={"phases.0.log": ["must not appear"]},
        expect_status=frozenset({"triggered"}),
        meta={"worker": "intruder"},
    )
    assert loaded.update("e07", refused) is False
    assert loaded.get("e07") == before
    assert loaded.get_meta("e07") == meta_before

    accepted = Update(
        set={"status": "failed", "end": "2021-07-22T12:05:00.000Z"},
        push={"phases.0.log": ["lost"]},
        expect_status=frozenset({"running", "waiting", "retrying"}),
    )
    assert loaded.update("e07", accepted) is True
    after = loaded.get("e07")
    assert after is not None
    assert after["status"] == "failed"
    assert after["end"] == "2021-07-22T12:05:00.000Z"
    assert after["phases"][0]["log"] == [*before["phases"][0]["log"], "lost"]
    # terminal now: the same guarded update is refused
    assert loaded.update("e07", accepted) is False
    assert loaded.get("e07") == after
    # the other documents were not touched
    assert loaded.get("e08") == BY_ID["e08"]


# --- list: the seed page's examples ------------------------------------------------------


def test_seed_example_name(loaded: ExecutionStore) -> None:
    assert ids(loaded, ("name", "ECB_FX")) == ["e04", "e03", "e02", "e01", "e05"]


def test_seed_example_name_and_date_range_inclusive_whole_days(loaded: ExecutionStore) -> None:
    # e01 starts at 2021-07-19T00:00:00.000Z and e03 at 2021-07-23T23:59:59.999Z: both in;
    # e05 (a millisecond before) and e04 (a millisecond after) are out
    result = ids(loaded, ("name", "ECB_FX"), ("start", "range(2021-07-19,2021-07-23)"))
    assert result == ["e03", "e02", "e01"]


def test_seed_example_failed_in_date_range(loaded: ExecutionStore) -> None:
    result = ids(loaded, ("status", "failed"), ("start", "range(2021-07-19,2021-07-23)"))
    assert result == ["e06", "e02"]


# --- list: filters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("status", "success"),), ["e03", "e01", "e05", "e10"]),
        ((("name", "ecb_fx"),), []),  # case-sensitive
        ((("name", "DEMO"),), ["e08", "e07", "e06"]),
        ((("_id", "e03"),), ["e03"]),
        ((("runAs", "com_walkfares"), ("status", "running")), ["e07"]),
        ((("loaderMessage", "Updated 32 series for 2021-07-19"),), ["e01"]),
        ((("message", "DEMO failed"),), ["e06"]),
    ],
    ids=["status", "case", "name", "id", "runAs", "loaderMessage", "message"],
)
def test_filter_equality(
    loaded: ExecutionStore, params: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    assert ids(loaded, *params) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gt(2021-07-22)", ["e04", "e03"]),
        ("gte(2021-07-22)", ["e04", "e03", "e08", "e07"]),
        ("lt(2021-07-19)", ["e05", "e10"]),
        ("lte(2021-07-19)", ["e01", "e05", "e10"]),
        ("2021-07-22", ["e08", "e07"]),
        ("gte(2021-07-23T01:59:59.999+02:00)", ["e04", "e03"]),
        ("gt(2021-07-23T23:59:59.999Z)", ["e04"]),
        ("2021-07-24T02:00:00+02:00", ["e04"]),
        ("range(2021-07-19T00:00:00.001Z,2021-07-23T23:59:59.998Z)", ["e08", "e07", "e06", "e02"]),
        ("ne(2021-07-22)", ["e04", "e03", "e06", "e02", "e01", "e05", "e10"]),
        ("in(2021-07-22,2021-07-18T23:59:59.999Z)", ["e08", "e07", "e05"]),
    ],
)
def test_filter_start_dates(loaded: ExecutionStore, value: str, expected: list[str]) -> None:
    assert ids(loaded, ("start", value)) == expected


def test_filter_end_missing_values(loaded: ExecutionStore) -> None:
    assert ids(loaded, ("end", "null")) == ["e08", "e07"]
    assert ids(loaded, ("end", "ne(null)")) == ["e04", "e03", "e06", "e02", "e01", "e05", "e10"]
    # not on that day: executions without an end are not on it either
    assert ids(loaded, ("end", "ne(2021-07-24)")) == [
        "e08", "e07", "e06", "e02", "e01", "e05", "e10",
    ]  # fmt: skip
    assert ids(loaded, ("end", "lt(2021-07-19)")) == ["e10"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("status", "in(failed,running)"),), ["e04", "e07", "e06", "e02"]),
        ((("status", "in(triggered)"),), ["e08"]),
        ((("_id", "in(e10,e01,zz)"),), ["e01", "e10"]),
        (
            (("loaderMessage", "in(null,Updated 1 series for 2021-07-10)"),),
            ["e04", "e08", "e07", "e06", "e02", "e10"],
        ),
        ((("status", "ne(success)"),), ["e04", "e08", "e07", "e06", "e02"]),
        ((("loaderMessage", "ne(null)"),), ["e03", "e01", "e05", "e10"]),
        ((("name", "regex(^ECB)"),), ["e04", "e03", "e02", "e01", "e05"]),
        ((("name", "regex(ECB)"),), ["e04", "e03", "e02", "e01", "e05", "e10"]),
        ((("name", "regex(^(DEMO|FX_.*)$)"),), ["e08", "e07", "e06", "e10"]),
        ((("loaderMessage", "regex(for 2021-07-1[0-9]$)"),), ["e01", "e05", "e10"]),
        ((("name", "gt(DEMO)"), ("name", "lt(FX)")), ["e04", "e03", "e02", "e01", "e05"]),
        ((("name", "range(E,G)"),), ["e04", "e03", "e02", "e01", "e05", "e10"]),
    ],
    ids=[
        "in",
        "in-one",
        "in-id",
        "in-null",
        "ne",
        "ne-null",
        "regex-anchor",
        "regex",
        "regex-group",
        "regex-message",
        "gt-lt-strings",
        "range-strings",
    ],
)
def test_filter_functions(
    loaded: ExecutionStore, params: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    assert ids(loaded, *params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("phases.name", "LOAD"),), ["e03", "e06", "e01", "e05", "e10"]),
        ((("phases.name", "TRANSFORM"),), ["e03", "e06", "e02", "e01", "e05"]),
        ((("phases.status", "failed"),), ["e04", "e06", "e02"]),
        ((("phases.status", "ne(failed)"),), ["e03", "e08", "e07", "e01", "e05", "e10"]),
        ((("phases.status", "running"),), ["e07"]),
        ((("phases.status", "in(running,failed)"),), ["e04", "e07", "e06", "e02"]),
        ((("phases.name", "regex(^TRANS)"), ("status", "failed")), ["e06", "e02"]),
        ((("phases.start", "2021-07-22"),), ["e07"]),
        ((("phases.name", "LOAD"), ("phases.status", "failed")), ["e06"]),
    ],
    ids=["name", "name-2", "status", "status-ne", "running", "in", "regex", "date", "two"],
)
def test_filter_phases(
    loaded: ExecutionStore, params: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    assert ids(loaded, *params) == expected


def test_several_filters_are_anded(loaded: ExecutionStore) -> None:
    params = (("name", "ECB_FX"), ("status", "success"), ("phases.name", "LOAD"))
    assert ids(loaded, *params) == ["e03", "e01", "e05"]
    assert ids(loaded, *params, ("start", "gte(2021-07-19)")) == ["e03", "e01"]
    assert ids(loaded, *params, ("start", "gte(2021-07-19)"), ("end", "lt(2021-07-20)")) == ["e01"]
    assert ids(loaded, ("name", "ECB_FX"), ("name", "DEMO")) == []


def test_or_and_not_nodes(loaded: ExecutionStore) -> None:
    either = Or((Condition("name", "eq", "DEMO"), Condition("status", "eq", "success")))
    rows, total = loaded.list(Query(where=either))
    assert [row["_id"] for row in rows] == ["e03", "e08", "e07", "e06", "e01", "e05", "e10"]
    assert total == 7
    # Not over a field some documents lack: those documents match, as with MongoDB's $nor
    early = Not(Condition("end", "gte", "2021-07-20T00:00:00.000Z"))
    rows, _ = loaded.list(Query(where=early))
    assert [row["_id"] for row in rows] == ["e08", "e07", "e01", "e05", "e10"]
    nested = And((Condition("name", "eq", "ECB_FX"), Not(Or((early, either)))))
    rows, _ = loaded.list(Query(where=nested))
    assert [row["_id"] for row in rows] == ["e04", "e02"]


def test_environments_are_isolated(loaded: ExecutionStore) -> None:
    assert ids(loaded, environment="staging") == ["e09"]
    assert ids(loaded, ("name", "ECB_FX"), environment="staging") == ["e09"]
    assert ids(loaded, ("_id", "e09")) == []
    assert ids(loaded, ("environment", "staging")) == []
    assert ids(loaded, environment="development") == []


# --- list: order, page, projection -----------------------------------------------------


def test_default_order_is_newest_start_first_then_id(loaded: ExecutionStore) -> None:
    rows, total = run(loaded)
    assert [row["_id"] for row in rows] == NEWEST_FIRST
    assert total == 9


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("start", ["e10", "e05", "e01", "e02", "e06", "e07", "e08", "e03", "e04"]),
        ("-start", NEWEST_FIRST),
        ("name,-start", ["e07", "e08", "e06", "e04", "e03", "e02", "e01", "e05", "e10"]),
        ("-name,start", ["e10", "e05", "e01", "e02", "e03", "e04", "e06", "e08", "e07"]),
        (
            '{"status":1,"start":-1}',
            ["e04", "e06", "e02", "e07", "e03", "e01", "e05", "e10", "e08"],
        ),
        ("name,-_id", ["e08", "e07", "e06", "e05", "e04", "e03", "e02", "e01", "e10"]),
        ("_id", ["e01", "e02", "e03", "e04", "e05", "e06", "e07", "e08", "e10"]),
        ("-end", ["e03", "e04", "e06", "e02", "e01", "e05", "e10", "e08", "e07"]),
        ("end", ["e07", "e08", "e10", "e05", "e01", "e02", "e06", "e04", "e03"]),
    ],
)
def test_sort(loaded: ExecutionStore, sort: str, expected: list[str]) -> None:
    assert ids(loaded, ("_sort", sort)) == expected


def test_sort_with_filter_and_page(loaded: ExecutionStore) -> None:
    rows, total = run(
        loaded, ("name", "ECB_FX"), ("_sort", "start"), ("_skip", "1"), ("_limit", "3")
    )
    assert [row["_id"] for row in rows] == ["e01", "e02", "e03"]
    assert total == 5


@pytest.mark.parametrize(
    ("limit", "skip", "expected"),
    [
        ("3", "0", ["e04", "e03", "e08"]),
        ("3", "3", ["e07", "e06", "e02"]),
        ("3", "8", ["e10"]),
        ("100", "20", []),
        ("0", "0", []),
        ("1", "2", ["e08"]),
    ],
)
def test_limit_skip_and_total(
    loaded: ExecutionStore, limit: str, skip: str, expected: list[str]
) -> None:
    rows, total = run(loaded, ("_limit", limit), ("_skip", skip))
    assert [row["_id"] for row in rows] == expected
    assert total == 9
    for row in rows:
        assert row == BY_ID[row["_id"]]


def test_total_counts_the_filter_not_the_page(loaded: ExecutionStore) -> None:
    rows, total = run(loaded, ("name", "ECB_FX"), ("_limit", "2"), ("_skip", "1"))
    assert [row["_id"] for row in rows] == ["e03", "e02"]
    assert total == 5


def test_project_keeps_id_and_the_named_fields(loaded: ExecutionStore) -> None:
    rows, total = run(loaded, ("_project", "status,name"), ("_limit", "3"))
    assert rows == [
        {"_id": "e04", "name": "ECB_FX", "status": "failed"},
        {"_id": "e03", "name": "ECB_FX", "status": "success"},
        {"_id": "e08", "name": "DEMO", "status": "triggered"},
    ]
    assert total == 9
    rows, _ = run(loaded, ("_project", '{"name":1,"status":0}'), ("status", "running"))
    assert rows == [{"_id": "e07", "name": "DEMO"}]
    # a field a document lacks is left out, not served as null
    rows, _ = run(loaded, ("_project", "loaderMessage"), ("start", "2021-07-22"))
    assert rows == [{"_id": "e08"}, {"_id": "e07"}]


def test_project_dotted_paths(loaded: ExecutionStore) -> None:
    rows, _ = run(loaded, ("_project", "phases.name,status"), ("_id", "in(e02,e08)"))
    assert rows == [
        {"_id": "e08", "status": "triggered", "phases": []},
        {"_id": "e02", "status": "failed", "phases": [{"name": "EXTRACT"}, {"name": "TRANSFORM"}]},
    ]
    rows, _ = run(loaded, ("_project", "phases,phases.name"), ("_id", "e04"))
    assert rows == [{"_id": "e04", "phases": BY_ID["e04"]["phases"]}]
    rows, _ = run(loaded, ("_project", "data.series"), ("_id", "in(e01,e02)"))
    assert rows == [
        {"_id": "e02"},
        {"_id": "e01", "data": {"series": {"2021-07-19": ["#ECB_FX.X"]}}},
    ]


# --- tokens and observations --------------------------------------------------------------


def test_tokens_add_and_find(store: ExecutionStore) -> None:
    reader = TokenRecord("a" * 64, "alice", "read", "2021-07-01T16:30:00.000Z")
    runner = TokenRecord("b" * 64, "bob", "run", "2021-07-02T16:30:00.000Z")
    store.add_token(reader)
    store.add_token(runner)
    assert store.find_token("a" * 64) == reader
    assert store.find_token("b" * 64) == runner
    assert store.find_token("c" * 64) is None


def test_observations_upsert_and_series(store: ExecutionStore) -> None:
    written = store.upsert_observations(
        PROD,
        [
            Observation("#ECB_FX.EURUSD:SPOT", "2021-07-02", 1.1851),
            Observation("#ECB_FX.EURUSD:SPOT", "2021-07-01", 1.1884),
            Observation("#ECB_FX.EURGBP:SPOT", "2021-07-01", 0.86033),
        ],
    )
    assert written == 3
    usd = store.get_series(PROD, "#ECB_FX.EURUSD:SPOT")
    assert usd == {"2021-07-01": 1.1884, "2021-07-02": 1.1851}
    assert list(usd) == ["2021-07-01", "2021-07-02"]
    assert store.get_series(PROD, "#ECB_FX.EURGBP:SPOT") == {"2021-07-01": 0.86033}

    # a second upsert of the same series and date replaces the value
    assert store.upsert_observations(PROD, [Observation("#ECB_FX.EURUSD:SPOT", "2021-07-01", 1.5)])
    assert store.get_series(PROD, "#ECB_FX.EURUSD:SPOT") == {
        "2021-07-01": 1.5,
        "2021-07-02": 1.1851,
    }

    # environments hold their own values
    store.upsert_observations("staging", [Observation("#ECB_FX.EURUSD:SPOT", "2021-07-01", 9.0)])
    assert store.get_series("staging", "#ECB_FX.EURUSD:SPOT") == {"2021-07-01": 9.0}
    assert store.get_series(PROD, "#ECB_FX.EURUSD:SPOT")["2021-07-01"] == 1.5
    assert store.get_series(PROD, "#ECB_FX.EURJPY:SPOT") == {}
    assert store.upsert_observations(PROD, []) == 0
