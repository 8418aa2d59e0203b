"""Property tests: generated queries give the same rows on SQLite and on MongoDB (mongomock, or
a real server with `PROCEXEC_TEST_MONGODB_URI`), and `_search` finds what its words say."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procexec.engine.errors import BadRequest
from procexec.engine.query import parse_query
from procexec.engine.search import AllOf, AnyOf, NoneOf, SearchNode, Term, parse_search
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from tests.engine.conftest import MONGO_URI, _mongo_store
from tests.engine.query_strategies import (
    DOCS,
    FIELDINFO_FIELDS,
    PROD,
    SORTABLE,
    json_filter,
    pipeline,
    pipeline_params,
    search,
    searched_words,
    valid_params,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SQLiteStore, MongoStore]]:
    sqlite = SQLiteStore(tmp_path_factory.mktemp("properties") / "x.db")
    database = f"procexec_test_{uuid.uuid4().hex[:12]}"
    mongo = _mongo_store(database)
    for doc in DOCS:
        sqlite.insert(copy.deepcopy(doc))
        mongo.insert(copy.deepcopy(doc))
    try:
        yield sqlite, mongo
    finally:
        mongo.client.drop_database(database)
        mongo.close()
        sqlite.close()


def _parse(params: list[tuple[str, str]], environment: str = PROD) -> Any:
    try:
        return parse_query(params, environment)
    except BadRequest as exc:  # the strategies make valid queries: a refusal is a bug
        raise AssertionError(f"valid parameters refused: {params}: {exc}") from None


@SETTINGS
@given(params=valid_params(), environment=st.sampled_from([PROD, PROD, "staging"]))
def test_both_stores_list_the_same_rows(
    stores: tuple[SQLiteStore, MongoStore], params: list[tuple[str, str]], environment: str
) -> None:
    sqlite, mongo = stores
    query = _parse(params, environment)
    sqlite_rows, sqlite_total = sqlite.list(query)
    mongo_rows, mongo_total = mongo.list(query)
    assert sqlite_total == mongo_total, params
    assert [row["_id"] for row in sqlite_rows] == [row["_id"] for row in mongo_rows], params
    assert sqlite_rows == mongo_rows
    texts, total = sqlite.list_json(query)
    assert total == sqlite_total and [json.loads(text) for text in texts] == sqlite_rows


@SETTINGS
@given(
    params=valid_params(),
    field=st.sampled_from([*SORTABLE, "phases.name", "phases.status", "data.count",
                           "data.series.2021-07-20", "phases.log", "data.nosuch"]),
)  # fmt: skip
def test_both_stores_find_the_same_distinct_values(
    stores: tuple[SQLiteStore, MongoStore], params: list[tuple[str, str]], field: str
) -> None:
    sqlite, mongo = stores
    query = _parse([*params, ("_distinct", field)])
    assert sqlite.distinct(query) == mongo.distinct(query), params


@SETTINGS
@given(
    params=valid_params(),
    field=st.sampled_from(FIELDINFO_FIELDS),
    environment=st.sampled_from([PROD, PROD, "staging"]),
)
def test_both_stores_count_the_same_field_values(
    stores: tuple[SQLiteStore, MongoStore],
    params: list[tuple[str, str]],
    field: str,
    environment: str,
) -> None:
    sqlite, mongo = stores
    params = [(name, raw) for name, raw in params if name != "_sort"]  # refused beside it
    query = _parse([*params, ("_fieldinfo", field)], environment)
    buckets = sqlite.fieldinfo(query)
    assert buckets == mongo.fieldinfo(query), params
    # the values of `_distinct`, each with as many executions as its filter selects
    distinct = _parse([*params, ("_distinct", field)], environment)
    assert sorted(str(b["_id"]) for b in buckets) == sorted(
        str(v) for v in sqlite.distinct(distinct)
    )
    for bucket in buckets[:4]:
        if isinstance(bucket["_id"], str | int | float) and not isinstance(bucket["_id"], bool):
            selected = [*params, ("_filter", json.dumps(bucket["filter"])), ("_limit", "0")]
            assert sqlite.list(_parse(selected, environment))[1] == bucket["count"], bucket


def _mongomock_counts_nothing(
    sqlite_rows: list[Any], mongo_rows: list[Any], stages: list[dict[str, Any]]
) -> bool:
    """mongomock answers a `$count`, or a `$group` by null, over no documents with one row of
    zeros; MongoDB (and SQLite) with none."""
    return (
        not MONGO_URI
        and sqlite_rows == []
        and len(mongo_rows) == 1
        and any("$count" in stage or stage.get("$group", {"_id": 0})["_id"] is None
                for stage in stages)
    )  # fmt: skip


@SETTINGS
@given(
    params=pipeline_params(),
    stages=pipeline(),
    environment=st.sampled_from([PROD, PROD, "staging"]),
)
def test_both_stores_aggregate_alike(
    stores: tuple[SQLiteStore, MongoStore],
    params: list[tuple[str, str]],
    stages: list[dict[str, Any]],
    environment: str,
) -> None:
    sqlite, mongo = stores
    query = _parse([*params, ("_aggregate", json.dumps(stages))], environment)
    sqlite_rows, mongo_rows = sqlite.aggregate(query), mongo.aggregate(query)
    assert sqlite_rows == mongo_rows or _mongomock_counts_nothing(
        sqlite_rows, mongo_rows, stages
    ), (params, stages)


@SETTINGS
@given(spec=json_filter())
def test_both_stores_agree_on_json_filters(
    stores: tuple[SQLiteStore, MongoStore], spec: dict[str, Any]
) -> None:
    import json

    sqlite, mongo = stores
    query = _parse([("_filter", json.dumps(spec)), ("_limit", "-1")])
    sqlite_rows, sqlite_total = sqlite.list(query)
    mongo_rows, mongo_total = mongo.list(query)
    assert [row["_id"] for row in sqlite_rows] == [row["_id"] for row in mongo_rows], spec
    assert sqlite_total == mongo_total


def _holds(node: SearchNode, texts: list[list[str]]) -> bool:
    """The reference meaning of a search: a term is its words in a row in one searched text."""
    if isinstance(node, Term):
        size = len(node.words)
        return any(
            tuple(found[start : start + size]) == node.words
            for found in texts
            for start in range(len(found) - size + 1)
        )
    if isinstance(node, NoneOf):
        return not _holds(node.item, texts)
    if isinstance(node, AllOf):
        return all(_holds(item, texts) for item in node.items)
    assert isinstance(node, AnyOf)
    return any(_holds(item, texts) for item in node.items)


@SETTINGS
@given(text=search())
def test_search_finds_what_its_words_say(stores: tuple[SQLiteStore, MongoStore], text: str) -> None:
    sqlite, mongo = stores
    node = parse_search(text)
    assert node is not None
    expected = {
        doc["_id"]
        for doc in DOCS
        if doc["environment"] == PROD and _holds(node, searched_words(doc))
    }
    query = _parse([("_search", text), ("_limit", "-1")])
    for store in (sqlite, mongo):
        rows, total = store.list(query)
        assert {row["_id"] for row in rows} == expected, (store.kind, text)
        assert total == len(expected)


def test_the_corpus_is_varied_enough(stores: tuple[SQLiteStore, MongoStore]) -> None:
    """The properties above only mean something if the corpus has every shape they meet."""
    assert len({doc["name"] for doc in DOCS}) >= 5
    assert any("end" not in doc for doc in DOCS) and any("end" in doc for doc in DOCS)
    assert any(doc["phases"] == [] for doc in DOCS)
    assert any(len(doc["phases"]) == 4 for doc in DOCS)
    assert any("message" not in doc for doc in DOCS)
    assert any(doc.get("reason", "") is None for doc in DOCS)
    assert {type(doc["data"]["count"]) for doc in DOCS if "data" in doc} == {int, float, str}
    assert {doc["environment"] for doc in DOCS} == {PROD, "staging"}
    sqlite, _ = stores
    assert isinstance(sqlite, SQLiteStore)
    assert Path(sqlite.path).exists()
