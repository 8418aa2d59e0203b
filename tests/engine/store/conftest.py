"""Fixtures of the store tests, beside those of `tests/engine/conftest.py` (`store`, each
backend in turn, which the scheduler's tests use too)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from procexec.engine.store.mongo import MongoStore
from tests.engine.conftest import _mongo_store


@pytest.fixture
def mongo() -> Iterator[MongoStore]:
    """An empty MongoDB store (mongomock, or the server of `PROCEXEC_TEST_MONGODB_URI`) in a
    database of its own, dropped afterwards."""
    database = f"procexec_test_{uuid.uuid4().hex[:12]}"
    store = _mongo_store(database)
    try:
        yield store
    finally:
        store.client.drop_database(database)
        store.close()
