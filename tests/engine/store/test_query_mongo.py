"""The MongoDB store's list machinery: the searched words kept beside each document, the text
index and the `$text` part of a search, and queries MongoDB refuses.

These run on mongomock, or on a real server when `PROCEXEC_TEST_MONGODB_URI` is set.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from procexec.engine.errors import BadRequest, StoreUnavailable
from procexec.engine.query import parse_query
from procexec.engine.search import parse_search
from procexec.engine.store.base import Update
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.mongo_query import TEXT_INDEX, mirror, mirror_update, text_cover
from tests.engine.store.documents import BY_ID


def text_of(store: MongoStore, execution_id: str) -> dict[str, Any]:
    row = store.executions.find_one({"_id": execution_id})
    assert row is not None
    text: dict[str, Any] = row["_meta"]["text"]
    return text


def test_mirror_holds_the_words_of_the_searched_texts() -> None:
    assert mirror(BY_ID["e02"]) == {
        "id": " e02 ",
        "name": " ecb fx ",
        "message": " ecb fx failed ",
        "reason": " crontab ecb fx ",
        "phases": [
            {"log": [" 2021 07 20t10 00 00 000000000z utc info extract success "]},
            {"log": [" 2021 07 20t10 00 00 000000000z utc info transform failed "]},
        ],
    }
    assert mirror({"_id": "x", "phases": "odd", "message": None}) == {
        "id": " x ", "name": "", "message": "", "reason": "", "phases": [],
    }  # fmt: skip


def test_mirror_update_follows_each_kind_of_change() -> None:
    sets, pushes = mirror_update(
        {
            "status": "running",
            "message": "Running LOAD",
            "phases.2.log": ["a b", "c"],
            "phases.1": {"name": "SEND", "log": ["d"]},
            "phases.0.log.3": "E f",
            "phases.0.status": "failed",
            "phases.$[running].message": "cancelled",
        },
        {"phases.3.log": ["g"], "phases": [{"name": "LOAD", "log": ["h"]}], "data.x": [1]},
    )
    assert sets == {
        "_meta.text.message": " running load ",
        "_meta.text.phases.2.log": [" a b ", " c "],
        "_meta.text.phases.1": {"log": [" d "]},
        "_meta.text.phases.0.log.3": " e f ",
    }
    assert pushes == {
        "_meta.text.phases.3.log": {"$each": [" g "]},
        "_meta.text.phases": {"$each": [{"log": [" h "]}]},
    }
    assert mirror_update({"phases": [{"log": ["x"]}, "odd"]}, None) == (
        {"_meta.text.phases": [{"log": [" x "]}, {"log": []}]},
        {},
    )


def test_the_words_follow_the_document_through_updates(mongo: MongoStore) -> None:
    doc = copy.deepcopy(BY_ID["e08"])
    mongo.insert(doc, meta={"worker": "w1"})
    assert text_of(mongo, "e08") == mirror(doc)
    assert mongo.get_meta("e08")["worker"] == "w1"
    assert "_meta" not in (mongo.get("e08") or {})
    mongo.update("e08", Update(push={"phases": [{"name": "EXTRACT", "log": ["one"]}]}))
    mongo.update("e08", Update(push={"phases.0.log": ["two"]}, set={"message": "Running"}))
    mongo.update("e08", Update(set={"status": "failed", "phases.0.log": ["three"]}))
    limited = Update(push={"phases.0.log": ["four", "five"]}, push_limit={"phases.0.log": 2})
    mongo.update("e08", limited)  # the words are bounded as the lines are
    stored = mongo.get("e08")
    assert stored is not None and stored["phases"][0]["log"] == ["three", "four"]
    assert stored is not None
    assert text_of(mongo, "e08") == mirror(stored)


def test_text_cover() -> None:
    def cover(text: str) -> list[str] | None:
        node = parse_search(text)
        assert node is not None
        return text_cover(node)

    assert cover("ecb") == ["ecb"]
    assert cover('"info completed load"') == ["completed"]  # the longest word of a phrase
    assert cover("ecb failed") == ["ecb"]  # any one required word will do
    assert cover("ecb|boe") == ["ecb", "boe"]
    assert cover("(ecb fx)|boe|ecb") == ["ecb", "boe"]
    assert cover("-ecb") is None
    assert cover("ecb|-boe") is None
    assert cover("-boe ecb") == ["ecb"]


def test_a_search_runs_on_the_text_index(mongo: MongoStore) -> None:
    assert TEXT_INDEX in mongo.executions.index_information()
    query = parse_query([("_search", "ecb -failed"), ("name", "ECB_FX")])
    selector = mongo._selector(query)
    assert selector["$and"][2] == {"$text": {"$search": "ecb", "$language": "none"}}
    lone_not = parse_query([("_search", "-ecb")])
    assert all("$text" not in part for part in mongo._selector(lone_not)["$and"])


def test_a_search_asks_the_text_index_then_the_exact_words(mongo: MongoStore) -> None:
    """`$text` (the index) finds the candidates, the exact search over the words narrows them:
    phrases, negations and alternatives give the documented answers."""
    for doc in (BY_ID["e01"], BY_ID["e02"], BY_ID["e08"]):
        mongo.insert(copy.deepcopy(doc))

    def found(search: str) -> list[str]:
        return sorted(row["_id"] for row in mongo.list(parse_query([("_search", search)]))[0])

    assert found("ecb") == ["e01", "e02"]
    assert found("ecb -failed") == ["e01"]
    assert found('"transform failed"') == ["e02"]
    assert found("e08|e01") == ["e01", "e08"]
    # the candidates come from the text index: without it, MongoDB refuses the search (but
    # for a lone NOT, which has no `$text` part)
    mongo.executions.drop_index(TEXT_INDEX)
    with pytest.raises(StoreUnavailable, match="text index required"):
        found("ecb")
    assert found("-ecb") == ["e08"]


def test_documents_stored_without_words_get_them_when_the_store_opens(mongo: MongoStore) -> None:
    mongo.executions.insert_one({**copy.deepcopy(BY_ID["e02"]), "_meta": {"worker": "w"}})
    mongo.db["migrations"].delete_many({})
    MongoStore(f"mongodb://unused/{mongo.db.name}", client=mongo.client)  # opens it again
    assert text_of(mongo, "e02") == mirror(BY_ID["e02"])
    assert mongo.get_meta("e02")["worker"] == "w"
    assert [row["_id"] for row in mongo.list(parse_query([("_search", "transform")]))[0]] == ["e02"]


class Refusing:
    """A collection whose reads fail as MongoDB fails them."""

    def __init__(self, code: int) -> None:
        self.code = code

    def count_documents(self, *_: Any, **__: Any) -> int:
        raise OperationFailure("Regular expression is invalid", code=self.code)

    distinct = find = count_documents


def test_a_query_mongodb_refuses_is_a_bad_request(mongo: MongoStore) -> None:
    mongo.executions = Refusing(51091)
    with pytest.raises(BadRequest, match=r"^query: MongoDB refused it: Regular expression"):
        mongo.list(parse_query([("name", "regex(x)")]))
    with pytest.raises(BadRequest):
        mongo.distinct(parse_query([("_distinct", "name")]))
    mongo.executions = Refusing(13)  # unauthorized: not the query
    with pytest.raises(StoreUnavailable):
        mongo.list(parse_query([]))
