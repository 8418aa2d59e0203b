"""The size limit of the API's answers (`engine.answers`, `PROCEXEC_MAX_ANSWER_BYTES`): the
setting, and each store counting a page's documents as it fetches them, stopping at the first
past the limit; outside `answer_limit` (the engine's own reads) nothing is limited.

The MongoDB store runs on mongomock, or on a real server when `PROCEXEC_TEST_MONGODB_URI` is
set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procexec.engine import answers
from procexec.engine.answers import AnswerTooLarge, answer_limit, gathered
from procexec.engine.errors import BadRequest
from procexec.engine.query import parse_query
from procexec.engine.settings import Settings, SettingsError
from procexec.engine.store.base import ExecutionStore
from tests.documents import execution

#: each stored document holds a log line of this many characters
LINE = 10_000
COUNT = 30
#: a few documents fit, all of them do not
LIMIT = 5 * LINE
MESSAGE = (
    f"answer: larger than {LIMIT} bytes (PROCEXEC_MAX_ANSWER_BYTES); ask for fewer documents "
    "with _limit (and the next ones with _skip), or for fewer fields with _project"
)


def large(number: int) -> dict[str, Any]:
    """An execution whose first phase logged one long line."""
    doc = execution(
        f"large-{number:03}", f"2021-07-{1 + number % 28:02}T16:30:{number % 60:02}.000Z"
    )
    doc["phases"][0]["log"].append(f"{number:03} " + "x" * LINE)
    return doc


@pytest.fixture
def filled(store: ExecutionStore) -> ExecutionStore:
    for number in range(COUNT):
        store.insert(large(number))
    return store


# --- the setting -------------------------------------------------------------------------


def test_the_answer_limit_is_32_mb_unless_set() -> None:
    assert Settings().max_answer_bytes == 32 * 1024 * 1024
    assert Settings.from_env({"PROCEXEC_MAX_ANSWER_BYTES": "1048576"}).max_answer_bytes == 2**20


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("100", "'100' must be at least 1024"),
        ("1e3", "'1e3' must be at least 1024"),
        ("2048.5", "'2048.5' is not a whole number"),
        ("lots", "'lots' is not a number"),
    ],
)
def test_an_answer_limit_that_cannot_be_used_is_refused(value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"PROCEXEC_MAX_ANSWER_BYTES: {problem}"):
        Settings.from_env({"PROCEXEC_MAX_ANSWER_BYTES": value})


# --- counting as the rows come -----------------------------------------------------------


def test_a_page_is_read_only_until_it_passes_the_limit() -> None:
    """`gathered` takes rows from the store's cursor one at a time and stops at the first one
    past the limit: the rest are never fetched."""
    fetched: list[int] = []

    def rows() -> Iterator[bytes]:
        for number in range(1000):
            fetched.append(number)
            yield b"x" * 99  # 100 bytes with its separator

    with answer_limit(1000), pytest.raises(AnswerTooLarge) as refused:
        gathered(rows())
    assert str(refused.value) == MESSAGE.replace(str(LIMIT), "1000")
    assert isinstance(refused.value, BadRequest)  # answered 400
    assert fetched == list(range(11))  # ten fit; the eleventh passes the limit
    with answer_limit(1000):
        assert len(gathered(b"x" * 99 for _ in range(10))) == 10


def test_a_stored_document_larger_than_the_limit_is_refused_before_it_is_shaped() -> None:
    shaped: list[bytes] = []

    def shape(row: bytes) -> bytes:
        shaped.append(row)
        return b"{}"

    with answer_limit(1024), pytest.raises(AnswerTooLarge):
        gathered([b"x" * 10, b"x" * 2000], shape)
    assert shaped == [b"x" * 10]


def test_without_a_limit_nothing_is_counted() -> None:
    assert answers.current() is None
    assert len(gathered(b"x" * 1000 for _ in range(1000))) == 1000
    with answer_limit(None):
        assert answers.current() is None


# --- each store --------------------------------------------------------------------------


def test_a_page_past_the_limit_is_refused(filled: ExecutionStore) -> None:
    query = parse_query([("_limit", str(COUNT))])
    with answer_limit(LIMIT), pytest.raises(AnswerTooLarge, match="PROCEXEC_MAX_ANSWER_BYTES"):
        filled.list_json(query)
    # the engine's reads have no limit: the same page, whole
    docs, total = filled.list_json(query)
    assert (len(docs), total) == (COUNT, COUNT)


def test_a_page_within_the_limit_is_answered_whole(filled: ExecutionStore) -> None:
    query = parse_query([("_limit", "3"), ("_skip", "4")])
    with answer_limit(LIMIT):
        docs, total = filled.list_json(query)
    assert total == COUNT
    assert docs == filled.list_json(query)[0]
    assert [json.loads(doc)["_id"] for doc in docs] == ["large-023", "large-022", "large-021"]


def test_a_projected_page_counts_what_it_answers(filled: ExecutionStore) -> None:
    """`_project` makes the answer small: the documents' logs are not counted."""
    query = parse_query([("_limit", str(COUNT)), ("_project", "name,status")])
    with answer_limit(LIMIT):
        docs, total = filled.list_json(query)
    assert total == COUNT
    assert json.loads(docs[0]) == {
        "_id": "large-027",
        "name": "ECB_FX",
        "status": "success",
    }


def test_distinct_values_are_refused_at_the_first_past_the_most() -> None:
    """`_distinct` through the documents stops reading at its 10,001st value."""
    read: list[int] = []

    def values() -> Iterator[Any]:
        for number in range(100):
            read.append(number)
            yield None if number % 2 else number % 10  # 5 distinct values, nulls between

    assert list(answers.at_most(values(), 5, lambda: BadRequest("too many"))) == [
        None if n % 2 else n % 10 for n in range(100)
    ]
    read.clear()
    with pytest.raises(BadRequest, match="too many"):
        list(answers.at_most(values(), 4, lambda: BadRequest("too many")))
    assert read == list(range(9))  # 0, 2, 4, 6 and then 8: the fifth
    same = [7, 7.0, True, "7", [1], [1]]  # four values, as `sorted_distinct` sees them
    assert list(answers.at_most(same, 4, lambda: BadRequest("x"))) == same


def test_a_distinct_of_too_many_values_is_refused(filled: ExecutionStore) -> None:
    from procexec.engine.limits import MAX_DISTINCT

    store = filled
    for number in range(COUNT, COUNT + 2):
        doc = large(number)
        doc["phases"][0]["log"] = [f"line {number} {n}" for n in range(MAX_DISTINCT // 2)]
        store.insert(doc)
    query = parse_query([("_distinct", "phases.log")])
    with pytest.raises(BadRequest, match=r"more than 10000 distinct values of .phases\.log."):
        store.distinct(query)


def test_a_large_page_tried_inline_goes_to_a_thread(tmp_path: Path) -> None:
    """On the event loop (`inline()`), a page of long logs gives up past `INLINE_BYTES`,
    though it takes few steps: copying its documents would hold the loop."""
    from procexec.engine.store.base import InlineBudgetExceeded
    from procexec.engine.store.sqlite import SQLiteStore
    from procexec.engine.store.sqlite.deadlines import INLINE_BYTES

    store = SQLiteStore(tmp_path / "inline.db")
    for number in range(INLINE_BYTES // LINE + 2):
        store.insert(large(number))
    small = parse_query([("_limit", "3")])
    whole = parse_query([("_limit", "10000")])
    with store.inline():
        assert len(store.list_json(small)[0]) == 3
    with pytest.raises(InlineBudgetExceeded), store.inline():
        store.list_json(whole)
    assert len(store.list_json(whole)[0]) == INLINE_BYTES // LINE + 2  # in a thread: whole
    store.close()
