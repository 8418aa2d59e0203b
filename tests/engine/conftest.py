"""Fixtures of the engine's tests: real stores only (SQLite files, MongoDB or mongomock)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from procexec.engine.plugins import load_registry
from procexec.engine.process import ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.sqlite import SQLiteStore
from tests.documents import assert_execution
from tests.engine.runs import Bench, open_bench

#: a real MongoDB server to hold the Mongo backend to; without it, mongomock stands in
MONGO_URI = os.environ.get("PROCEXEC_TEST_MONGODB_URI")


def _mongo_store(database: str) -> MongoStore:
    """The Mongo store on the real server, or on mongomock's in-memory client standing in
    (through its adapter, `tests.engine.mongomock_adapter`)."""
    if MONGO_URI:
        return MongoStore(urlunparse(urlparse(MONGO_URI)._replace(path="/" + database)))
    from tests.engine.mongomock_adapter import adapted_client

    return MongoStore(f"mongodb://mongomock/{database}", client=adapted_client())


@contextlib.contextmanager
def mongo_database() -> Iterator[MongoStore]:
    """An empty Mongo store in a database of its own, dropped afterwards."""
    database = f"procexec_test_{uuid.uuid4().hex[:12]}"
    mongo = _mongo_store(database)
    try:
        yield mongo
    finally:
        mongo.client.drop_database(database)
        mongo.close()


@pytest.fixture(
    params=["sqlite", "mongo"],
    ids=["sqlite", "mongodb" if MONGO_URI else "mongomock"],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExecutionStore]:
    """Each backend in turn: the conformance suite holds them all to the same results."""
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "x.db")
        yield sqlite
        sqlite.close()
        return
    with mongo_database() as mongo:
        yield mongo


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})


@pytest.fixture
def registry(settings: Settings) -> ProcessRegistry:
    return load_registry(settings)


@pytest.fixture
def sqlite_store(settings: Settings) -> Iterator[ExecutionStore]:
    """The embedded store where the settings put it (a real SQLite file under tmp_path)."""
    opened = open_store(settings.store_url)
    assert isinstance(opened, SQLiteStore)
    assert Path(opened.path).parent == settings.data_dir
    yield opened
    opened.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """A real SQLite store with DEMO, a broker stand-in and a housekeeper (tests.engine.runs).

    Every document the test left in the store is then held to the document's model
    (`tests.documents.assert_execution`): whatever the test's runs went through, the engine
    wrote nothing else."""
    with open_bench(tmp_path) as opened:
        yield opened
        for (execution_id,) in opened.store._connect().execute("SELECT id FROM executions"):
            doc = opened.store.get(execution_id)
            assert doc is not None
            assert_execution(doc)


@pytest.fixture
def any_bench(store: ExecutionStore, tmp_path: Path) -> Iterator[Bench]:
    """The bench over each store in turn (the `store` fixture): SQLite, then MongoDB or
    mongomock; every document the test left held to the document's model."""
    with open_bench(tmp_path, store) as opened:
        yield opened
        rows, _ = opened.store.list(parse_query([("_limit", "1000")]))
        for doc in rows:
            assert_execution(doc)
