"""The stores' indexes, made when a store opens, and their health report (`check`, which
`procexec store check` prints): on SQLite and on MongoDB (mongomock through its adapter, or the
server of `PROCEXEC_TEST_MONGODB_URI`)."""

from __future__ import annotations

import copy
import sqlite3
import uuid
from pathlib import Path

import pytest

from procexec.engine.errors import StoreUnavailable
from procexec.engine.redact import masked_url
from procexec.engine.store import open_store
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.mongo_admin import INDEXES
from procexec.engine.store.mongo_query import TEXT_INDEX
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.store.sqlite.schema import wanted_indexes
from tests.engine.store.documents import DOCS

# --- both stores ----------------------------------------------------------------------------


def test_a_store_just_opened_is_healthy_and_empty(store: ExecutionStore) -> None:
    report = store.check()
    assert report.kind == store.kind
    assert (report.reachable, report.error, report.missing) == (True, None, [])
    assert report.indexes, "a store makes indexes"
    assert report.healthy
    assert (report.executions, dict(report.by_status), report.checkpoints) == (0, {}, 0)


def test_the_report_counts_executions_by_status_and_checkpoints(store: ExecutionStore) -> None:
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    store.save_checkpoint("e07", 0, b"result")
    report = store.check()
    statuses = [doc["status"] for doc in DOCS]
    assert report.executions == len(DOCS)
    assert dict(report.by_status) == {status: statuses.count(status) for status in statuses}
    assert report.checkpoints == 1
    assert report.healthy


# --- MongoDB ------------------------------------------------------------------------------


def reopened(mongo: MongoStore, *, prepare: bool = True) -> MongoStore:
    """The same database opened again, as another process opens it (a real server needs no
    shared client; mongomock keeps its data in the client object)."""
    return MongoStore(f"mongodb://unused/{mongo.db.name}", client=mongo.client, prepare=prepare)


def index_names(mongo: MongoStore, collection: str) -> set[str]:
    return {index["name"] for index in mongo.db[collection].list_indexes()}


def test_opening_makes_every_index_and_opening_again_changes_nothing(mongo: MongoStore) -> None:
    wanted = {
        name: [model.document["name"] for model in models] for name, models in INDEXES.items()
    }
    assert TEXT_INDEX in wanted["executions"]
    for collection, names in wanted.items():
        assert index_names(mongo, collection) == {"_id_", *names}
    before = {collection: list(mongo.db[collection].list_indexes()) for collection in INDEXES}
    again = reopened(mongo)
    assert again.ensure_indexes() == [name for names in wanted.values() for name in names]
    assert {c: list(mongo.db[c].list_indexes()) for c in INDEXES} == before
    assert again.check().healthy


def test_a_dropped_index_is_reported_missing_and_made_again_when_the_store_opens(
    mongo: MongoStore,
) -> None:
    mongo.executions.drop_index(TEXT_INDEX)
    mongo.executions.drop_index("environment_1_status_1_start_-1__id_-1")
    report = reopened(mongo, prepare=False).check()
    assert report.reachable and not report.healthy
    assert [(index.collection, index.name) for index in report.missing] == [
        ("executions", "environment_1_status_1_start_-1__id_-1"),
        ("executions", TEXT_INDEX),
    ]
    assert TEXT_INDEX not in index_names(mongo, "executions")  # check made nothing
    assert reopened(mongo).check().healthy


def test_an_index_of_other_keys_under_a_wanted_name_is_missing(mongo: MongoStore) -> None:
    """Indexes are compared by their keys (and uniqueness), not by their names."""
    mongo.observations.drop_index("environment_1_series_id_1_date_1")
    mongo.observations.create_index(
        [("environment", 1), ("series_id", 1), ("date", 1)], name="mine"
    )  # not unique: the upsert of a series value could write it twice
    mongo.executions.drop_index(TEXT_INDEX)
    mongo.executions.create_index([("_meta.text.name", "text")], name=TEXT_INDEX)
    report = mongo.check()
    assert [index.name for index in report.missing] == [
        TEXT_INDEX,
        "environment_1_series_id_1_date_1",
    ]
    mongo.executions.drop_index("environment_1_start_-1__id_-1")
    mongo.executions.create_index([("environment", 1), ("start", -1), ("_id", -1)], name="list")
    assert "environment_1_start_-1__id_-1" not in [i.name for i in mongo.check().missing]


def test_an_index_that_conflicts_stops_the_store_from_opening(mongo: MongoStore) -> None:
    """Same name, other keys: MongoDB refuses to make procexec's, and the store says so
    (without the URL's password) rather than run without it."""
    mongo.executions.drop_index(TEXT_INDEX)
    mongo.executions.create_index([("name", 1)], name=TEXT_INDEX)
    with pytest.raises(StoreUnavailable, match=TEXT_INDEX) as refused:
        MongoStore(f"mongodb://bob:secret@unused/{mongo.db.name}", client=mongo.client)
    assert str(refused.value).startswith("cannot open MongoDB at mongodb://bob:***@unused/")
    assert "secret" not in str(refused.value)
    assert [index.name for index in mongo.check().missing] == [TEXT_INDEX]


def test_opening_without_prepare_writes_nothing(mongo: MongoStore) -> None:
    database = f"procexec_test_{uuid.uuid4().hex[:12]}"
    bare = MongoStore(f"mongodb://unused/{database}", client=mongo.client, prepare=False)
    try:
        report = bare.check()
        assert report.reachable
        assert len(report.missing) == sum(len(models) for models in INDEXES.values())
        assert (report.executions, report.checkpoints) == (0, 0)
        assert bare.db.list_collection_names() == []
    finally:
        mongo.client.drop_database(database)


def test_a_server_that_does_not_answer_is_reported_not_reachable() -> None:
    """A real client, to a port nothing listens on: the check answers within its timeout."""
    down = MongoStore("mongodb://bob:secret@127.0.0.1:1/procexec", prepare=False)
    try:
        report = down.check(timeout=0.5)
    finally:
        down.close()
    assert (report.kind, report.reachable, report.healthy) == ("mongodb", False, False)
    assert report.error
    assert report.indexes == () and report.executions is None


# --- SQLite -------------------------------------------------------------------------------


def test_sqlite_reports_each_index_it_makes(tmp_path: Path) -> None:
    path = tmp_path / "procexec.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX ix_list_name")
    conn.close()
    report = SQLiteStore(path, prepare=False).check()
    assert [(index.collection, index.name) for index in report.indexes] == wanted_indexes()
    assert [index.name for index in report.missing] == ["ix_list_name"]
    assert report.reachable and not report.healthy
    store = SQLiteStore(path)  # opened by a service: made again
    try:
        assert store.check().healthy
    finally:
        store.close()


def test_sqlite_check_reads_only(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a database without procexec's tables
    report = open_store(f"sqlite:///{path}", prepare=False).check()
    assert report.reachable
    assert len(report.missing) == len(wanted_indexes())
    assert (report.executions, report.checkpoints) == (None, None)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.close()
    missing = tmp_path / "nowhere" / "procexec.db"
    assert not SQLiteStore(missing, prepare=False).check().reachable
    assert not missing.parent.exists()


def test_a_file_that_is_not_a_database_is_not_reachable(tmp_path: Path) -> None:
    path = tmp_path / "procexec.db"
    path.write_bytes(b"not a database " * 100)
    report = SQLiteStore(path, prepare=False).check()
    assert (report.reachable, report.healthy) == (False, False)
    assert report.error == "file is not a database"


# --- the URL as shown ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mongodb://bob:s3cret@db:27017/procexec", "mongodb://bob:***@db:27017/procexec"),
        ("mongodb+srv://bob:p%40ss@cluster.example/x", "mongodb+srv://bob:***@cluster.example/x"),
        ("mongodb://bob:p@ss@h1,h2:27018/x?tls=true", "mongodb://bob:***@h1,h2:27018/x?tls=true"),
        ("mongodb://bob@db/procexec", "mongodb://bob@db/procexec"),
        ("mongodb://db:27017/procexec", "mongodb://db:27017/procexec"),
        ("sqlite:////data/procexec.db", "sqlite:////data/procexec.db"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_sqlite_check_counts_by_status_without_reading_every_run(
    tmp_path: Path, traced_sql: list[str]
) -> None:
    """The counts come from the counters the store keeps: no index leads by status any more
    (the housekeeping's are partial), and a scan of every run reads every document."""
    store = SQLiteStore(tmp_path / "s.db")
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    traced_sql.clear()  # the inserts; what follows is the check's own connection
    report = store.check()
    grouped = [sql for sql in traced_sql if "GROUP BY status" in sql]
    assert grouped and all("FROM execution_totals" in sql for sql in grouped), grouped
    counted: dict[str, int] = {}
    for doc in DOCS:
        counted[doc["status"]] = counted.get(doc["status"], 0) + 1
    assert dict(report.by_status) == counted
    store.close()
