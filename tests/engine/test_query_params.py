"""`_project` (both forms, inclusion and exclusion), `_sort` words, `_distinct`, and the
backend-neutral helpers behind them."""

from __future__ import annotations

from typing import Any

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.query import parse_query, project_document, sorted_distinct, values_at


@pytest.mark.parametrize(
    ("raw", "project", "exclude"),
    [
        ("name,status", ("name", "status"), None),
        ("-phases,-data", None, ("phases", "data")),
        ("-phases.log", None, ("phases.log",)),
        ("-_id", None, None),  # _id always comes back
        ("-phases,-phases.log", None, ("phases",)),
        ('{"phases": 0, "data": false}', None, ("phases", "data")),
        ('{"name": 1, "_id": 0}', ("name",), None),
        ('{"name": 1, "data": 0}', ("name",), None),  # an inclusion keeps what it names
        ('{"_id": 0}', None, None),
    ],
)
def test_project_forms(
    raw: str, project: tuple[str, ...] | None, exclude: tuple[str, ...] | None
) -> None:
    query = parse_query([("_project", raw)])
    assert (query.project, query.exclude) == (project, exclude)


@pytest.mark.parametrize(
    ("raw", "sort"),
    [
        ('{"start": "desc", "name": "ASC"}', (("start", -1), ("name", 1))),
        ('{"start": "descending"}', (("start", -1),)),
        ('{"start": -1.0}', (("start", -1),)),
    ],
)
def test_sort_directions_in_words(raw: str, sort: tuple[tuple[str, int], ...]) -> None:
    assert parse_query([("_sort", raw)]).sort == sort


def test_sort_direction_words_are_checked() -> None:
    with pytest.raises(BadRequest, match=r"^_sort: direction of 'start' must be 1 or -1$"):
        parse_query([("_sort", '{"start": "down"}')])


def test_distinct_is_parsed() -> None:
    assert parse_query([("_distinct", " phases.name ")]).distinct == "phases.name"
    assert parse_query([]).distinct is None
    for bad, words in [("", "'' is not a field name"), ("_meta", "not a field of an execution"),
                       ("a..b", "is not a field name")]:  # fmt: skip
        with pytest.raises(BadRequest) as caught:
            parse_query([("_distinct", bad)])
        assert str(caught.value).startswith("_distinct: ") and words in str(caught.value)


def test_paths_are_bounded() -> None:
    assert parse_query([("data.b.c.d.e.f.g.h", "x")]).where is not None
    with pytest.raises(BadRequest, match="at most 8 parts"):
        parse_query([("data.b.c.d.e.f.g.h.i", "x")])


DOC: dict[str, Any] = {
    "_id": "e1",
    "name": "ECB_FX",
    "phases": [
        {"name": "EXTRACT", "status": "success", "log": ["a", "b"]},
        {"name": "LOAD", "status": "failed", "log": ["c"]},
        "odd",
    ],
    "data": {"series": {"2021-07-01": ["#A", "#B"]}, "curves": {}},
}


def test_project_document() -> None:
    assert project_document(DOC) is DOC
    assert project_document(DOC, ["name"]) == {"_id": "e1", "name": "ECB_FX"}
    assert project_document(DOC, ["phases.name", "data.series"]) == {
        "_id": "e1",
        "phases": [{"name": "EXTRACT"}, {"name": "LOAD"}],
        "data": {"series": {"2021-07-01": ["#A", "#B"]}},
    }
    assert project_document(DOC, exclude=["phases.log", "data"]) == {
        "_id": "e1",
        "name": "ECB_FX",
        "phases": [
            {"name": "EXTRACT", "status": "success"},
            {"name": "LOAD", "status": "failed"},
            "odd",
        ],
    }
    assert project_document(DOC, exclude=["name.first"]) == DOC  # a path into a string


def test_values_at_unwinds_arrays_as_mongodb_distinct() -> None:
    assert values_at(DOC, ["phases", "name"]) == ["EXTRACT", "LOAD"]
    assert values_at(DOC, ["phases", "log"]) == ["a", "b", "c"]
    assert values_at(DOC, ["data", "series", "2021-07-01"]) == ["#A", "#B"]
    assert values_at(DOC, ["nothing", "here"]) == []


def test_sorted_distinct() -> None:
    values = ["b", 2, None, "a", 1.5, {"k": 1}, "b", 2.0, {"k": 1}, True]
    assert sorted_distinct(values) == [1.5, 2, "a", "b", {"k": 1}, True]


@pytest.mark.parametrize(
    ("params", "start"),
    [
        ({"start": "s" * 20_000}, "start: 'sss"),
        ({"name": "in(" + "x" * 20_000}, "name: malformed call of in()"),
        ({"status": "=" + "f" * 20_000}, "status: the value '=fff"),
        ({"_filter": "status=" + "=" * 20_000}, "_filter: "),
        ({"_sort": "-" + "n" * 20_000}, "_sort: "),
        ({"_limit": "9" * 20_000}, "_limit: '999"),
        ({"name": "regex(" + "\x01" * 20_000 + ")"}, "name: "),
    ],
)
def test_a_query_error_repeats_a_short_escaped_excerpt_of_the_input(
    params: dict[str, str], start: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_query(list(params.items()))
    message = str(refused.value)
    assert message.startswith(start), message[:200]
    assert len(message) < 400, message  # the input was 20,000 characters
    assert "\x01" not in message and "\n" not in message
