"""The time limit of the API's reads (`ExecutionStore.limited`, `PROCEXEC_READ_TIMEOUT_SECONDS`):
the setting, the SQLite store stopping a read past it (and nothing else), and the MongoDB store
passing it on as `maxTimeMS`.

The SQLite reads are slow by their volume: a real store of `tests.volume.EXECUTIONS` executions.
The MongoDB tests run on mongomock, or on a real server when `PROCEXEC_TEST_MONGODB_URI` is set;
mongomock ignores `maxTimeMS`, so they check that every read of a limited block carries it and
that the server's `ExecutionTimeout` becomes the API's error, not that a server stops a read.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import ExecutionTimeout

from procexec.engine.errors import QueryTimeout, StoreUnavailable
from procexec.engine.query import Query, parse_query
from procexec.engine.settings import Settings
from procexec.engine.store.base import InlineBudgetExceeded, Observation, Update
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from tests.engine.store.documents import DOCS
from tests.volume import EXECUTIONS, SLOW_AGGREGATE, SLOW_FIELDINFO, SLOW_FILTER

#: far below what a read of every execution takes, far above what a read of a few does
LIMIT = 0.01
MESSAGE = (
    "query took longer than 0.01 s (PROCEXEC_READ_TIMEOUT_SECONDS); "
    "narrow the filters or add start=range(...)"
)


# --- the setting -------------------------------------------------------------------------


def settings(**env: str) -> Settings:
    return Settings.from_env({"PROCEXEC_DATA_DIR": "/unused", **env})


def test_the_read_limit_is_ten_seconds_unless_set() -> None:
    assert settings().read_timeout == 10.0
    assert settings(PROCEXEC_READ_TIMEOUT_SECONDS="").read_timeout == 10.0
    assert settings(PROCEXEC_READ_TIMEOUT_SECONDS="2.5").read_timeout == 2.5
    assert settings(PROCEXEC_READ_TIMEOUT_SECONDS=" 30 ").read_timeout == 30.0


@pytest.mark.parametrize("value", ["0", "-1", "0.0", "inf"])
def test_a_read_limit_of_zero_or_less_is_no_limit(value: str) -> None:
    assert settings(PROCEXEC_READ_TIMEOUT_SECONDS=value).read_timeout is None


@pytest.mark.parametrize("value", ["ten", "10s", "nan", "1,5"])
def test_a_read_limit_that_is_not_a_number_is_refused_at_startup(value: str) -> None:
    with pytest.raises(ValueError) as refused:
        settings(PROCEXEC_READ_TIMEOUT_SECONDS=value)
    assert str(refused.value) == (
        f"PROCEXEC_READ_TIMEOUT_SECONDS: '{value}' is not a number of seconds (0 or less: no limit)"
    )


def test_the_message_names_the_limit_and_how_to_narrow_the_query() -> None:
    assert str(QueryTimeout(10.0)) == (
        "query took longer than 10 s (PROCEXEC_READ_TIMEOUT_SECONDS); "
        "narrow the filters or add start=range(...)"
    )
    assert str(QueryTimeout(LIMIT)) == MESSAGE
    assert QueryTimeout(LIMIT).status_code == 503
    assert not isinstance(QueryTimeout(LIMIT), StoreUnavailable)  # retrying it will not help


# --- SQLite --------------------------------------------------------------------------------


@pytest.fixture
def store(volume: Path, tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(shutil.copy(volume, tmp_path / "x.db"))
    yield opened
    opened.close()


SLOW = [
    pytest.param("aggregate", [("_aggregate", SLOW_AGGREGATE)], id="aggregate"),
    pytest.param("fieldinfo", [("_fieldinfo", SLOW_FIELDINFO)], id="fieldinfo"),
    pytest.param("distinct", [("_distinct", "phases.status"), SLOW_FILTER], id="distinct"),
    pytest.param("list", [SLOW_FILTER], id="list"),
    pytest.param("list_json", [SLOW_FILTER, ("_sort", "message")], id="list_json"),
]


def call(store: SQLiteStore | MongoStore, method: str, query: Query) -> Any:
    return getattr(store, method)(query)


@pytest.mark.parametrize(("method", "params"), SLOW)
def test_a_read_past_the_limit_stops_and_the_connection_serves_on(
    store: SQLiteStore, method: str, params: list[tuple[str, str]]
) -> None:
    query = parse_query(params)
    conn = store._connect()
    with pytest.raises(QueryTimeout) as stopped, store.limited(LIMIT):
        call(store, method, query)
    assert str(stopped.value) == MESSAGE
    # stopped by the progress handler, or by the regular expression's own look at the deadline
    cause = str(stopped.value.__cause__)
    assert "interrupted" in cause or "user-defined function raised exception" in cause
    assert store._connect() is conn and not conn.in_transaction
    # the same connection: a read within the limit, then the same read without one
    with store.limited(LIMIT):
        assert store.list(parse_query([("_limit", "1")]))[1] == EXECUTIONS
    assert call(store, method, query) is not None


def test_a_transaction_the_stopped_read_left_open_is_rolled_back(store: SQLiteStore) -> None:
    conn = store._connect()
    with pytest.raises(QueryTimeout), store.limited(LIMIT):
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM executions WHERE doc REGEXP 'never'").fetchone()
    assert not conn.in_transaction
    # a transaction of the caller's, open before the block, is the caller's to end
    conn.execute("BEGIN")
    with store.limited(LIMIT):
        assert store.get("v000001") is not None
    assert conn.in_transaction
    conn.execute("COMMIT")


def test_other_failures_in_a_limited_block_are_what_they_are(store: SQLiteStore) -> None:
    with pytest.raises(StoreUnavailable, match="disk I/O error"), store.limited(LIMIT):
        raise StoreUnavailable("disk I/O error") from sqlite3.OperationalError("disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="no such table"), store.limited(LIMIT):
        store._connect().execute("SELECT * FROM missing")


def test_reads_and_writes_outside_a_limited_block_have_no_limit(store: SQLiteStore) -> None:
    """The engine's calls (runs, updates, heartbeats) never run in a limited block: on the
    connection a limited read was stopped on, and beside a limited block of another thread,
    they take as long as they take."""
    slow = parse_query([("_aggregate", SLOW_AGGREGATE)])
    with pytest.raises(QueryTimeout), store.limited(LIMIT):
        store.aggregate(slow)
    assert sum(row["n"] for row in store.aggregate(slow)) == EXECUTIONS  # no limit any more
    rows = [
        Observation(f"S{n % 500}", f"2021-{1 + n // 500 % 12:02d}-01", n) for n in range(50_000)
    ]
    assert store.upsert_observations("production", rows) == 50_000  # one long write

    inside, done = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def limited_reader() -> None:
        try:
            with store.limited(LIMIT):
                inside.set()
                done.wait(30)
                store.aggregate(slow)
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)
        finally:
            store.release_thread()

    reader = threading.Thread(target=limited_reader)
    reader.start()
    try:
        assert inside.wait(30)
        # the engine, meanwhile: a long write and updates, on this thread's connection
        assert store.upsert_observations("production", rows) == 50_000
        for number in range(0, EXECUTIONS, 10):
            change = Update(set={"message": f"checked {number}"}, meta={"heartbeat": "x"})
            assert store.update(f"v{number:06d}", change)
        assert sum(row["n"] for row in store.aggregate(slow)) == EXECUTIONS
    finally:
        done.set()
        reader.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], QueryTimeout)


def test_limits_nest_and_none_is_no_limit(store: SQLiteStore) -> None:
    slow = parse_query([("_fieldinfo", SLOW_FIELDINFO)])
    with store.limited(None), store.limited(0):
        assert store.fieldinfo(slow)
    # the outer limit holds
    with pytest.raises(QueryTimeout) as stopped, store.limited(LIMIT), store.limited(3600):
        store.fieldinfo(slow)
    assert str(stopped.value) == MESSAGE


def test_the_loops_budget_is_unchanged_by_the_limit(store: SQLiteStore) -> None:
    """A call under `inline()` gives up with `InlineBudgetExceeded` as before, limit or not;
    retried outside it, under the limit, it is the limit that stops it."""
    slow = parse_query([SLOW_FILTER])
    for outer in (store.limited(3600), store.limited(None)):
        with pytest.raises(InlineBudgetExceeded), outer, store.inline():
            store.list(slow)
    # under the budget, far tighter, the limit is no limit at all
    with store.inline(), store.limited(LIMIT):
        assert store.list(parse_query([("_limit", "2")]))[1] == EXECUTIONS
    with pytest.raises(QueryTimeout), store.limited(LIMIT):
        store.list(slow)
    with store.inline():
        assert store.list(parse_query([("_limit", "2")]))[1] == EXECUTIONS


# --- MongoDB -------------------------------------------------------------------------------

READS = {"find", "find_one", "count_documents", "distinct", "aggregate"}


class Recording:
    """The store's collection, recording the options of every read it is asked for."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.calls: list[tuple[str, int | None]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.collection, name)
        if name not in READS:
            return method

        def read(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs.get("maxTimeMS", kwargs.get("max_time_ms"))))
            return method(*args, **kwargs)

        return read


@pytest.fixture
def mongo(mongo: MongoStore) -> MongoStore:
    """The empty store of the conftest, holding `DOCS`."""
    for doc in DOCS:
        mongo.insert(doc)
    return mongo


MONGO_READS = [
    ("get", None),
    ("list", [("_limit", "2")]),
    ("list", [("_skip", "1"), ("_limit", "1")]),
    ("distinct", [("_distinct", "name")]),
    ("distinct", [("_distinct", "name"), ("_search", "ecb")]),
    ("fieldinfo", [("_fieldinfo", "status")]),
    ("fieldinfo", [("_fieldinfo", "phases.status")]),
    ("aggregate", [("_aggregate", '[{"$group":{"_id":"$name","n":{"$sum":1}}}]')]),
]


@pytest.mark.parametrize(("method", "params"), MONGO_READS)
def test_every_read_of_a_limited_block_carries_max_time_ms(
    mongo: MongoStore, method: str, params: list[tuple[str, str]] | None
) -> None:
    recording = Recording(mongo.executions)
    mongo.executions = recording  # type: ignore[assignment]

    def read() -> Any:
        if params is None:
            return mongo.get(DOCS[0]["_id"])
        return call(mongo, method, parse_query(params))

    unlimited = read()
    assert recording.calls and all(limit is None for _, limit in recording.calls)
    recording.calls.clear()
    with mongo.limited(2.5):
        assert read() == unlimited
    assert recording.calls
    for name, limit in recording.calls:
        assert limit == 2500, name
    recording.calls.clear()
    read()  # the limit ends with the block
    assert all(limit is None for _, limit in recording.calls)


def test_writes_never_carry_max_time_ms(mongo: MongoStore) -> None:
    recording = Recording(mongo.executions)
    mongo.executions = recording  # type: ignore[assignment]
    with mongo.limited(2.5):
        assert mongo.update(DOCS[0]["_id"], Update(meta={"heartbeat": "x"}))
        assert mongo.get_meta(DOCS[0]["_id"])["heartbeat"] == "x"
    assert all(limit is None for _, limit in recording.calls)


class TimingOut:
    """A collection whose reads fail as MongoDB fails a read past its `maxTimeMS`."""

    def find(self, *_: Any, **__: Any) -> Any:
        raise ExecutionTimeout("operation exceeded time limit", code=50)

    find_one = count_documents = distinct = aggregate = find


@pytest.mark.parametrize(("method", "params"), MONGO_READS)
def test_a_read_the_server_stopped_is_the_apis_timeout(
    mongo: MongoStore, method: str, params: list[tuple[str, str]] | None
) -> None:
    mongo.executions = TimingOut()  # type: ignore[assignment]

    def read() -> Any:
        if params is None:
            return mongo.get(DOCS[0]["_id"])
        return call(mongo, method, parse_query(params))

    with pytest.raises(QueryTimeout) as stopped, mongo.limited(LIMIT):
        read()
    assert str(stopped.value) == MESSAGE
    assert isinstance(stopped.value.__cause__, ExecutionTimeout)
    with pytest.raises(StoreUnavailable):  # outside a limited block: not the API's limit
        read()
