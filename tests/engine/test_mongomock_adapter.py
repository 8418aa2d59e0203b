"""The MongoDB stand-in's adapter (`tests/engine/mongomock_adapter.py`) makes each write atomic,
as a server does: mongomock alone let two threads insert one `_id` (33 of 200 trials of eight
threads, with the interpreter switching threads every microsecond)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pymongo
import pytest

from tests.engine.mongomock_adapter import adapted_client


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads switched every microsecond, so that a write that is not atomic is caught."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def racing(write: object, threads: int = 8) -> int:
    """How many of `threads` threads, started together, ran `write` without a duplicate key."""
    done: list[int] = []
    start = threading.Barrier(threads)

    def one() -> None:
        start.wait()
        try:
            write()  # type: ignore[operator]
            done.append(1)
        except pymongo.errors.DuplicateKeyError:
            pass

    started = [threading.Thread(target=one) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(30)
    return len(done)


@pytest.mark.usefixtures("switching_often")
def test_one_id_is_inserted_once_by_threads_racing_for_it() -> None:
    for trial in range(100):
        collection = adapted_client()["race"][f"c{trial}"]
        assert racing(lambda c=collection: c.insert_one({"_id": "x"})) == 1


@pytest.mark.usefixtures("switching_often")
def test_a_conditional_update_is_passed_by_one_thread_alone() -> None:
    for trial in range(100):
        collection = adapted_client()["race"][f"c{trial}"]
        collection.insert_one({"_id": "x", "seq": 0})
        racing(
            lambda c=collection: c.find_one_and_update(
                {"_id": "x", "seq": 0}, {"$inc": {"seq": 1}, "$push": {"by": 1}}
            )
        )
        assert len(collection.find_one({"_id": "x"})["by"]) == 1
