"""Fixtures of the store tests, beside those of `tests/engine/conftest.py` (`store`, each
backend in turn, which the scheduler's tests use too).

`loaded` is `store` holding `ALL`; the modules that hold the stores to `DOCS` alone
(test_conformance, with hidden meta, and test_query_sqlite, on SQLite only) load their own."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Iterator

import pytest

from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.mongo import MongoStore
from tests.engine.conftest import mongo_database
from tests.engine.store.documents import ALL


@pytest.fixture
def mongo() -> Iterator[MongoStore]:
    """An empty MongoDB store (mongomock, or the server of `PROCEXEC_TEST_MONGODB_URI`) in a
    database of its own, dropped afterwards."""
    with mongo_database() as store:
        yield store


@pytest.fixture
def loaded(store: ExecutionStore) -> ExecutionStore:
    """Each backend in turn, holding `ALL`."""
    for doc in ALL:
        store.insert(copy.deepcopy(doc))
    return store


@pytest.fixture
def traced_sql(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement that the SQLite connections opened from now on run (a failed one too),
    in order, in the list given (`list.append` is atomic across threads)."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    return statements
