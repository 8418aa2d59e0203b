"""Fixtures of the store tests, beside those of `tests/engine/conftest.py` (`store`, each
backend in turn, which the scheduler's tests use too).

`loaded` is `store` holding `ALL`; the modules that hold the stores to `DOCS` alone
(test_conformance, with hidden meta, and test_query_sqlite, on SQLite only) load their own."""

from __future__ import annotations

import copy
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
