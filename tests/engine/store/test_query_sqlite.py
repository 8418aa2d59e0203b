"""The SQLite store's list machinery: the FTS index and counters kept by triggers, migration of
stores made by earlier versions, the query plans, deep pages, and calls bounded for the loop."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.errors import StoreUnavailable
from procexec.engine.query import parse_query
from procexec.engine.store.base import InlineBudgetExceeded, Update
from procexec.engine.store.sqlite import SQLiteStore, compiler
from procexec.engine.store.sqlite.pages import DEEP_SKIP, SMALL_SEARCH
from tests.engine.store.documents import DOCS, PROD


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "x.db")
    yield opened
    opened.close()


@pytest.fixture
def loaded(store: SQLiteStore) -> SQLiteStore:
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    return store


def ids(store: SQLiteStore, *params: tuple[str, str]) -> list[str]:
    return [row["_id"] for row in store.list(parse_query(params))[0]]


class Statements:
    """The SQL statements a connection runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.seen: list[str] = []
        conn.set_trace_callback(self.seen.append)

    def matching(self, text: str) -> list[str]:
        return [sql for sql in self.seen if text in sql]


def plan(conn: sqlite3.Connection, sql: str, params: list[Any]) -> str:
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


Tally = dict[tuple[str, ...], int]


def tally(conn: sqlite3.Connection, sql: str) -> Tally:
    """Rows of keys then a count, as {keys: count}."""
    return {tuple(row[:-1]): row[-1] for row in conn.execute(sql)}


def kept(conn: sqlite3.Connection, table: str, keys: str) -> Tally:
    """A counter table's non-zero counts, by `keys`."""
    return tally(conn, f"SELECT {keys}, n FROM {table} WHERE n != 0")


def recounted(conn: sqlite3.Connection, *keys: str) -> Tally:
    """The same counts, counted from the executions (`keys`: SQL expressions)."""
    aliased = ", ".join(f"{key} AS k{n}" for n, key in enumerate(keys))
    groups = ", ".join(f"k{n}" for n in range(len(keys)))
    return tally(conn, f"SELECT {aliased}, count(*) FROM executions GROUP BY {groups}")


#: each counter table: its key columns, and the same keys counted from the executions
COUNTERS = {
    "execution_counts": ("environment, name, status", ("environment", "name", "status")),
    "execution_totals": ("environment, status", ("environment", "status")),
    "execution_days": (
        "environment, status, day",
        ("environment", "status", "substr(start, 1, 10)"),
    ),
    "execution_months": (
        "environment, status, month",
        ("environment", "status", "substr(start, 1, 7)"),
    ),
}


def out_of_step(conn: sqlite3.Connection, *tables: str) -> dict[str, tuple[Tally, Tally]]:
    """The counter tables (all, or `tables`) whose counts differ from a count of the
    executions: each with what it keeps and what the executions say."""
    differ: dict[str, tuple[Tally, Tally]] = {}
    for table in tables or COUNTERS:
        columns, keys = COUNTERS[table]
        counts = kept(conn, table, columns), recounted(conn, *keys)
        if counts[0] != counts[1]:
            differ[table] = counts
    return differ


# --- triggers ----------------------------------------------------------------------------------


def test_the_index_and_counters_follow_every_write(loaded: SQLiteStore) -> None:
    conn = loaded._connect()
    assert not out_of_step(conn)
    loaded.update("e08", Update(set={"status": "running", "start": "2021-08-01T00:00:00.000Z"}))
    loaded.update("e07", Update(set={"status": "failed"}, meta={"worker": "w"}))
    loaded.update("e07", Update(meta={"heartbeat": "2021-07-22T12:00:01.000Z"}))  # meta only
    loaded.update("e06", Update(push={"phases.0.log": ["more"]}))
    assert not out_of_step(conn)
    # deleted by anyone (retention): gone from the index and the counters too
    conn.execute("DELETE FROM executions WHERE id IN ('e01', 'e07')")
    assert not out_of_step(conn)
    assert ids(loaded, ("_search", "e01")) == []
    assert ids(loaded, ("_search", "demo")) == ["e08", "e06"]
    assert loaded.list(parse_query([("_limit", "0")]))[1] == len(DOCS) - 3  # e09 is staging


def written_btrees(store: SQLiteStore, change: Any) -> set[str]:
    """The tables and indexes whose pages `change` (a call on the store) writes: the frames
    it adds to the write-ahead log, each named by `dbstat` after its page."""
    conn = store._connect()
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    change()
    wal = Path(f"{store.path}-wal").read_bytes()
    size = int.from_bytes(wal[8:12], "big")
    pages = {int.from_bytes(wal[at : at + 4], "big") for at in range(32, len(wal), 24 + size)}
    owners = dict(conn.execute("SELECT pageno, name FROM dbstat"))
    return {owners.get(page, "?") for page in pages}


def test_a_status_change_rewrites_the_counters_rows_and_no_index_of_totals_or_processes(
    loaded: SQLiteStore,
) -> None:
    # a first move makes the counter rows of the new keys (an index entry each), kept at 0
    loaded.update("e07", Update(set={"status": "success"}))
    loaded.update("e07", Update(set={"status": "running"}))
    written = written_btrees(
        loaded, lambda: loaded.update("e07", Update(set={"status": "success"}))
    )
    assert {"execution_totals", "execution_counts", "execution_months"} <= written
    assert {"ix_days_cover", "ix_months_cover"} <= written  # a deep skip sums from them alone
    indexed = {  # the totals' and the processes' counters' indexes
        name
        for (name,) in loaded._connect().execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
            "('execution_totals', 'execution_counts')"
        )
    }
    assert indexed and not written & indexed, written & indexed
    assert not out_of_step(loaded._connect())


def test_documents_are_stored_and_served_as_compact_json(store: SQLiteStore) -> None:
    doc = {"_id": "c1", "environment": PROD, "name": "ECB_FX", "phases": [{"log": ["a, b: c"]}]}
    store.insert(doc)
    store.update("c1", Update(push={"phases.0.log": ["d"]}))
    (stored,) = store._connect().execute("SELECT doc FROM executions").fetchone()
    doc["phases"][0]["log"].append("d")
    assert stored == json.dumps(doc, separators=(",", ":"))
    assert store.list_json(parse_query([("name", "ECB_FX")]))[0] == [stored.encode()]


def test_a_reused_rowid_does_not_inherit_words(store: SQLiteStore) -> None:
    conn = store._connect()
    store.insert({"_id": "a", "environment": PROD, "name": "ALPHA", "start": "x"})
    conn.execute("DELETE FROM executions WHERE id = 'a'")
    store.insert({"_id": "b", "environment": PROD, "name": "BETA", "start": "x"})
    assert conn.execute("SELECT rowid FROM executions WHERE id = 'b'").fetchone()[0] == 1
    assert ids(store, ("_search", "alpha")) == []
    assert ids(store, ("_search", "beta")) == ["b"]


def test_odd_documents_are_indexed_without_error(store: SQLiteStore) -> None:
    odd: list[dict[str, Any]] = [
        {"_id": "o1", "environment": PROD, "name": 5, "message": {"k": "nested words"}},
        {"_id": "o2", "environment": PROD, "phases": ["not a phase", {"log": "one line"}]},
        {"_id": "o3", "environment": PROD, "phases": [{"log": [None, 7, {"x": "deep"}]}]},
        {"_id": "o4", "environment": PROD, "phases": {"log": ["not an array"]}},
        {"_id": "o5", "environment": PROD, "reason": "a\ue000b"},
    ]
    for doc in odd:
        store.insert(doc)
    assert ids(store, ("_search", '"nested words"')) == ["o1"]
    assert ids(store, ("_search", "5")) == ["o1"]
    assert ids(store, ("_search", "line")) == ["o2"]
    assert ids(store, ("_search", "deep 7")) == ["o3"]
    assert ids(store, ("_search", '"a b"')) == ["o5"]
    store.update("o3", Update(set={"phases": []}))
    assert ids(store, ("_search", "deep")) == []


# --- stores made by earlier versions --------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE executions (
    id TEXT PRIMARY KEY, doc TEXT NOT NULL, worker TEXT, heartbeat TEXT, input TEXT, chain TEXT,
    environment TEXT GENERATED ALWAYS AS (json_extract(doc, '$.environment')) VIRTUAL,
    name TEXT GENERATED ALWAYS AS (json_extract(doc, '$.name')) VIRTUAL,
    status TEXT GENERATED ALWAYS AS (json_extract(doc, '$.status')) VIRTUAL,
    start TEXT GENERATED ALWAYS AS (json_extract(doc, '$.start')) VIRTUAL,
    end_ TEXT GENERATED ALWAYS AS (json_extract(doc, '$.end')) VIRTUAL,
    service TEXT GENERATED ALWAYS AS (json_extract(doc, '$.service')) VIRTUAL,
    trigger_ TEXT GENERATED ALWAYS AS (json_extract(doc, '$.trigger')) VIRTUAL,
    run_as TEXT GENERATED ALWAYS AS (json_extract(doc, '$.runAs')) VIRTUAL
);
CREATE INDEX ix_exec_env_start ON executions(environment, start DESC, id DESC);
CREATE INDEX ix_exec_env_name_start ON executions(environment, name, start DESC, id DESC);
CREATE INDEX ix_exec_env_status_start ON executions(environment, status, start DESC, id DESC);
"""


def test_a_store_of_an_earlier_version_gets_its_index_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.executemany(
            "INSERT INTO executions (id, doc) VALUES (?, ?)",
            [(doc["_id"], json.dumps(doc)) for doc in DOCS],
        )
    store = SQLiteStore(path)
    try:
        conn = store._connect()
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"ix_list_start", "ix_list_name", "ix_list_status"} <= indexes
        assert not indexes & {
            "ix_exec_env_start",
            "ix_exec_env_name_start",
            "ix_exec_env_status_start",
        }
        assert not out_of_step(conn, "execution_counts", "execution_days", "execution_months")
        assert ids(store, ("_search", "transform failed")) == ["e06", "e02"]
        assert store.list(parse_query([("status", "failed"), ("_limit", "0")]))[1] == 3
        # a search index without the environment column (an earlier build) is made again
        conn.execute("DROP TABLE executions_fts")
        conn.execute(
            "CREATE VIRTUAL TABLE executions_fts "
            "USING fts5(id, name, message, reason, log, content='')"
        )
    finally:
        store.close()
    again = SQLiteStore(path)
    try:
        assert ids(again, ("_search", "transform failed")) == ["e06", "e02"]
        assert ids(again, ("_search", "e09")) == []
    finally:
        again.close()
    # opening it once more changes nothing
    third = SQLiteStore(path)
    try:
        assert not out_of_step(third._connect(), "execution_counts")
        assert ids(third, ("_search", "ecb_fx")) == ["e04", "e03", "e02", "e01", "e05"]
    finally:
        third.close()


def test_a_store_without_month_counters_gets_them(loaded: SQLiteStore) -> None:
    """A store of the version before the month counters: they are made from the day counters
    when it opens, and kept by the triggers from then on."""
    conn = loaded._connect()
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS execution_counts_{trigger}")
    conn.execute("DROP TABLE execution_months")
    path = loaded.path
    loaded.close()
    store = SQLiteStore(path)
    try:
        conn = store._connect()
        assert not out_of_step(conn, "execution_months")
        assert kept(conn, "execution_months", "month")
        store.insert(
            {"_id": "n1", "environment": PROD, "status": "failed", "start": "2020-02-02T10:00:00Z"}
        )
        store.update("e01", Update(set={"start": "2019-12-31T23:59:59.999Z"}))
        assert not out_of_step(conn, "execution_months", "execution_days", "execution_counts")
    finally:
        store.close()


# --- plans ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ((("name", "ECB_FX"),), "ix_list_name"),
        ((("name", "ECB_FX"), ("start", "range(2021-07-19,2021-07-23)")), "ix_list_name"),
        ((("status", "failed"), ("start", "range(2021-07-19,2021-07-23)")), "ix_list_status"),
        ((("_filter", "(status=failed or status=running) and name=ECB_FX"),), "ix_list_name"),
        ((), "ix_list_start"),
        ((("trigger", "scheduled"),), "ix_list_start"),
        ((("runAs", "com_walkfares"), ("status", "in(failed,running)")), "ix_list_start"),
    ],
)
def test_list_queries_walk_an_index_in_order(
    loaded: SQLiteStore, params: tuple[tuple[str, str], ...], index: str
) -> None:
    conn = loaded._connect()
    trace = Statements(conn)
    loaded.list(parse_query(params))
    page = trace.matching("SELECT CAST(executions.doc AS BLOB)")
    assert len(page) == 1
    query_plan = plan(conn, page[0], [])  # the traced statement has its values in it
    assert f"USING INDEX {index}" in query_plan, query_plan
    assert "TEMP B-TREE" not in query_plan, query_plan
    assert "SCAN executions" not in query_plan, query_plan


def test_totals_of_name_and_status_filters_come_from_the_counters(loaded: SQLiteStore) -> None:
    conn = loaded._connect()
    for params in [(), (("name", "ECB_FX"),), (("status", "in(failed,running)"),),
                   (("_filter", "not (name=DEMO or status=success)"),)]:  # fmt: skip
        everything = loaded.list(parse_query([*params, ("_limit", "-1")]))[0]
        assert len(everything) > 1
        trace = Statements(conn)
        rows, total = loaded.list(parse_query([*params, ("_limit", "1")]))
        assert (len(rows), total) == (1, len(everything))
        assert trace.matching("FROM execution_totals") or trace.matching("FROM execution_counts")
        assert not trace.matching("count(*) FROM executions"), trace.seen
    trace = Statements(conn)
    loaded.list(parse_query([("name", "ECB_FX"), ("start", "gte(2021-07-20)"), ("_limit", "1")]))
    assert trace.matching("count(*) FROM executions")


def test_a_first_page_that_is_not_full_is_its_own_total(loaded: SQLiteStore) -> None:
    conn = loaded._connect()
    for params in [(("name", "ECB_FX"),), (("name", "nobody"),), (("_search", "timeout"),),
                   (("status", "failed"), ("_search", "timeout|refused"))]:  # fmt: skip
        trace = Statements(conn)
        rows, total = loaded.list(parse_query(params))
        assert total == len(rows) < 100
        assert not trace.matching("count(*) FROM executions"), trace.seen
        assert not trace.matching("FROM execution_counts"), trace.seen
        # a later page still counts
        trace = Statements(conn)
        assert loaded.list(parse_query([*params, ("_skip", "1")]))[1] == total
        assert trace.matching("count(") or trace.matching("sum(n)"), trace.seen


def test_a_search_is_served_by_the_full_text_index(loaded: SQLiteStore) -> None:
    conn = loaded._connect()
    trace = Statements(conn)
    assert ids(loaded, ("_search", "transform failed")) == ["e06", "e02"]
    statements = trace.matching("MATCH")
    # a selective search asks the index once, for its matches, listed for the page after
    assert len(statements) == 1
    assert "executions_fts" in statements[0]
    # it reads its matches only, sorts their keys, then reads the page
    page = trace.matching("SELECT CAST(e.doc AS BLOB)")[0]
    assert "+executions.environment" in page
    assert "json_each" in page
    assert SMALL_SEARCH >= 2
    query_plan = plan(conn, page, [])
    assert "VIRTUAL TABLE INDEX" in query_plan, query_plan
    assert "SCAN executions " not in query_plan + " ", query_plan
    assert "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)" in query_plan, query_plan


def test_a_selective_search_beside_a_filter_reads_its_matches_alone(loaded: SQLiteStore) -> None:
    """With `status=failed` beside it, a selective search still reads only its matches, by
    their rowids: an index of `status` would walk every failed execution."""
    conn = loaded._connect()
    trace = Statements(conn)
    failed = [("_search", "ecb_fx"), ("status", "failed")]
    assert ids(loaded, *failed) == ["e04", "e02"]
    assert loaded.list(parse_query([*failed, ("_limit", "0")]))[1] == 2
    for sql in trace.matching("json_each"):
        query_plan = plan(conn, sql, [])
        assert "USING INDEX" not in query_plan, query_plan
        assert "SEARCH executions USING INTEGER PRIMARY KEY (rowid=?)" in query_plan, query_plan
    assert len(trace.matching("json_each")) == 2  # the page, and the count beside _limit=0


@pytest.mark.parametrize(
    ("alternatives", "rest", "merged"),
    [
        (["status=failed", "status=running"], "name=ECB_FX", True),
        (["status=failed", "status=running", "status=warning"], "", True),
        (["status=failed", "name=ECB_FX"], "", False),  # two columns
        (["status=failed", "status=gt(running)"], "", False),  # not equalities alone
        (["phases.status=failed", "phases.status=running"], "", False),  # not a column
    ],
)
def test_equalities_on_one_column_become_one_in_list(
    loaded: SQLiteStore, alternatives: list[str], rest: str, merged: bool
) -> None:
    conn = loaded._connect()
    trace = Statements(conn)
    expression = "(" + " or ".join(alternatives) + ")" + (f" and {rest}" if rest else "")
    got = ids(loaded, ("_filter", expression))
    page = trace.matching("SELECT CAST(executions.doc AS BLOB)")[0]
    assert ("IN (" in page) is merged, page
    assert (" OR " in page) is not merged, page
    # the rows of the alternatives' own lists together, in the list's order
    each: set[str] = set()
    for alternative in alternatives:
        each |= set(ids(loaded, ("_filter", f"{alternative} and {rest}" if rest else alternative)))
    assert got == [doc_id for doc_id in ids(loaded, ("_limit", "-1")) if doc_id in each]
    assert got


def test_deep_skips_jump_to_their_day(store: SQLiteStore) -> None:
    for number in range(DEEP_SKIP + 500):
        store.insert(
            {
                "_id": f"d{number:05d}",
                "environment": PROD,
                "status": "success" if number % 3 else "failed",
                "start": f"2021-03-{1 + number % 28:02d}T{number % 24:02d}:00:00.000Z",
            }
        )
    conn = store._connect()
    trace = Statements(conn)
    rows, total = store.list(parse_query([("_skip", str(DEEP_SKIP + 100)), ("_limit", "5")]))
    assert total == DEEP_SKIP + 500 and len(rows) == 5
    assert trace.matching("FROM execution_days")
    assert trace.matching("executions.start < '2021-03-")
    # a start that is not an ISO timestamp leaves no day to jump to: the plain skip answers
    store.insert({"_id": "odd", "environment": PROD, "status": "success", "start": "someday"})
    trace = Statements(conn)
    again, _ = store.list(parse_query([("_skip", str(DEEP_SKIP + 100)), ("_limit", "5")]))
    assert not trace.matching("executions.start <")
    walked = [row["_id"] for row in store.list(parse_query([("_limit", "-1")]))[0]]
    assert walked[0] == "odd"  # 'someday' sorts after every timestamp
    assert [row["_id"] for row in again] == walked[DEEP_SKIP + 100 : DEEP_SKIP + 105]


@pytest.mark.parametrize("sort", ["-start", "start"])
def test_deep_skips_over_months_give_the_pages_of_a_plain_walk(
    store: SQLiteStore, sort: str
) -> None:
    """Executions over fourteen months, unevenly, with two statuses: every deep page, in either
    order, with or without a status filter, is the one a walk through the whole list gives."""
    for number in range(DEEP_SKIP * 3):
        month = 1 + (number * number) % 14  # uneven months: some hold many more rows
        year, month = (2020, month) if month <= 12 else (2021, month - 12)
        store.insert(
            {
                "_id": f"m{number:05d}",
                "environment": PROD,
                "status": "failed" if number % 5 == 0 else "success",
                "start": f"{year}-{month:02d}-{1 + number % 28:02d}T{number % 24:02d}:00:00.000Z",
            }
        )
    conn = store._connect()
    for status in (None, "failed"):
        filters = [("_sort", sort), *([("status", status)] if status else [])]
        walked = [row["_id"] for row in store.list(parse_query([*filters, ("_limit", "-1")]))[0]]
        for skip in (DEEP_SKIP, DEEP_SKIP + 1, 1777, len(walked) - 3, len(walked) + 10):
            trace = Statements(conn)
            rows, total = store.list(parse_query([*filters, ("_skip", str(skip)), ("_limit", "7")]))
            assert total == len(walked)
            assert [row["_id"] for row in rows] == walked[skip : skip + 7], (status, skip)
            if DEEP_SKIP <= skip < len(walked):
                assert trace.matching("FROM execution_months"), (status, skip)


# --- bounded calls -----------------------------------------------------------------------------


def test_inline_calls_give_up_past_their_budget_and_leave_the_store_usable(
    store: SQLiteStore,
) -> None:
    for number in range(3000):
        store.insert({"_id": f"b{number:05d}", "environment": PROD, "status": "success",
                      "start": f"2021-01-01T00:00:{number % 60:02d}.000Z",
                      "message": f"line {number}"})  # fmt: skip
    bounded = store.inline()
    with bounded:
        rows, total = store.list(parse_query([("_limit", "3")]))
    assert (len(rows), total) == (3, 3000)
    heavy = parse_query([("message", "regex(9$)"), ("_sort", "message")])
    with pytest.raises(InlineBudgetExceeded), store.inline():
        store.list(heavy)
    conn = store._connect()
    assert not conn.in_transaction
    rows, total = store.list(heavy)  # unbounded: answers
    assert total == 300
    with store.inline():
        assert store.list(parse_query([("_limit", "1")]))[1] == 3000


def test_an_inline_call_does_not_wait_for_a_locked_database(loaded: SQLiteStore) -> None:
    conn = loaded._connect()
    with loaded.inline():  # the calls of the block go to a connection that waits for no lock
        assert loaded._connect().execute("PRAGMA busy_timeout").fetchone()[0] == 0
    assert loaded._connect() is conn
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    # the store's own error for a locked database: given up, to be tried in a worker thread
    locked = sqlite3.OperationalError("database is locked")
    with pytest.raises(InlineBudgetExceeded), loaded.inline():
        raise StoreUnavailable("the SQLite store is unavailable: database is locked") from locked
    with pytest.raises(InlineBudgetExceeded), loaded.inline():
        raise locked
    # any other failure is what it is
    with pytest.raises(StoreUnavailable), loaded.inline():
        raise StoreUnavailable("disk I/O error") from sqlite3.OperationalError("disk I/O error")
    with pytest.raises(StoreUnavailable, match="unavailable: disk I/O error"), loaded.inline():
        raise sqlite3.OperationalError("disk I/O error")
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert loaded.list(parse_query([]))[1] == len(DOCS) - 1


def test_compiled_filters_are_remembered_without_mixing_values_up(store: SQLiteStore) -> None:
    """Compiled clauses are remembered with their query; queries that Python holds equal but
    that differ in their values' types stay apart, and a caller adding to a clause's
    parameters changes no later answer."""
    for number, flag in enumerate([True, 1, 1.5, "1", None]):
        start = f"2021-07-0{number + 1}T00:00:00.000Z"
        store.insert({"_id": f"f{number}", "environment": PROD, "status": "success",
                      "start": start, "data": {"flag": flag}})  # fmt: skip
    for spec, expected in [
        ('{"data.flag": 1}', ["f1"]),
        ('{"data.flag": 1.0}', ["f1"]),
        ('{"data.flag": "1"}', ["f3"]),
        ('{"data.flag": 1}', ["f1"]),
        ('{"data.flag": {"$gt": 1}}', ["f2"]),
        ('{"data.flag": null}', ["f4"]),
    ]:
        assert sorted(ids(store, ("_filter", spec))) == expected, spec
    query = parse_query([("status", "success"), ("_search", "f1")])
    sql, params = compiler.where_clause(query)
    params.append("poison")
    assert compiler.where_clause(query) == (sql, params[:-1])
    assert query.compiled  # remembered there
    assert compiler.where_clause(parse_query([("status", "success"), ("_search", "f1")])) == (
        sql,
        params[:-1],
    )
    assert ids(store, ("status", "success"), ("_search", "f1")) == ["f1"]
    assert ids(store, ("data.flag", "1")) == ["f3"]  # a URL's value is text
    assert ids(store, ("status", "failed"), ("_search", "f1")) == []


def _aggregate(store: SQLiteStore, stages: Any, *params: tuple[str, str]) -> list[Any]:
    return store.aggregate(parse_query([("_aggregate", json.dumps(stages)), *params]))


@pytest.mark.parametrize(
    ("stages", "params"),
    [
        ([{"$group": {"_id": "$status", "count": {"$sum": 1}}}], ()),  # the platform's example
        ([{"$group": {"_id": "$name", "n": {"$count": {}}, "twice": {"$sum": 2}}},
          {"$sort": {"n": -1}}, {"$limit": 2}], ()),
        ([{"$group": {"_id": None, "n": {"$sum": 1}}}], (("status", "in(failed,running)"),)),
        ([{"$group": {"_id": "$status", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}},
          {"$project": {"n": 1}}], (("name", "ne(DEMO)"),)),
        ([{"$group": {"_id": "$name", "n": {"$sum": 1}}}], (("name", "nobody"),)),
    ],
)  # fmt: skip
def test_counting_groups_come_from_the_counters(
    loaded: SQLiteStore, stages: list[Any], params: tuple[tuple[str, str], ...]
) -> None:
    """A pipeline that only counts by name or status reads the counters, not the documents,
    and answers as the general plan does (forced here by a `$match` of nothing first)."""
    conn = loaded._connect()
    trace = Statements(conn)
    counted = _aggregate(loaded, stages, *params)
    assert trace.matching("FROM execution_counts WHERE"), trace.seen
    assert not trace.matching("FROM executions"), trace.seen
    general = _aggregate(loaded, [{"$match": {}}, *stages], *params)
    assert counted == general
