"""The list call's query language, parsed: every function, date bound and error."""

from __future__ import annotations

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.limits import DEFAULT_LIMIT, MAX_LIMIT
from procexec.engine.query import And, Condition, Not, Or, Query, parse_query


def where(*params: tuple[str, str]) -> object:
    return parse_query(params).where


def day(field: str, date: str) -> And:
    return And(
        (
            Condition(field, "gte", f"{date}T00:00:00.000Z"),
            Condition(field, "lte", f"{date}T23:59:59.999Z"),
        )
    )


# --- defaults and plain values ----------------------------------------------------------


def test_no_parameters_give_the_defaults() -> None:
    assert parse_query([]) == Query(
        environment="production",
        where=None,
        sort=(("start", -1),),
        limit=DEFAULT_LIMIT,
        skip=0,
        project=None,
    )
    assert DEFAULT_LIMIT == 100


def test_environment_is_carried() -> None:
    assert parse_query([("name", "ECB_FX")], "staging").environment == "staging"


def test_equality() -> None:
    assert where(("name", "ECB_FX")) == Condition("name", "eq", "ECB_FX")
    assert where(("phases.name", "LOAD")) == Condition("phases.name", "eq", "LOAD")
    assert where(("_id", "05f1ec1a")) == Condition("_id", "eq", "05f1ec1a")
    assert where(("status", "null")) == Condition("status", "eq", None)
    assert where(("message", "Completed Successfully")) == Condition(
        "message", "eq", "Completed Successfully"
    )
    assert where(("data.series.2021-07-01", "#ECB_FX.EURUSD:SPOT")) == Condition(
        "data.series.2021-07-01", "eq", "#ECB_FX.EURUSD:SPOT"
    )


def test_several_filters_are_anded_in_order() -> None:
    assert where(("name", "ECB_FX"), ("status", "failed"), ("phases.status", "failed")) == And(
        (
            Condition("name", "eq", "ECB_FX"),
            Condition("status", "eq", "failed"),
            Condition("phases.status", "eq", "failed"),
        )
    )


def test_ignored_parameters_are_skipped() -> None:
    query = parse_query(
        [("_filter", "status=failed"), ("name", "DEMO"), ("_search", "x")],
        ignore=("_filter", "_search"),
    )
    assert query.where == Condition("name", "eq", "DEMO")


# --- value functions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gt(b)", Condition("name", "gt", "b")),
        ("gte(b)", Condition("name", "gte", "b")),
        ("lt(b)", Condition("name", "lt", "b")),
        ("lte(b)", Condition("name", "lte", "b")),
        ("ne(b)", Condition("name", "ne", "b")),
        ("ne(null)", Condition("name", "ne", None)),
        ("in(a)", Condition("name", "in", ("a",))),
        ("in(a, b ,null)", Condition("name", "in", ("a", "b", None))),
        ("range(a,m)", And((Condition("name", "gte", "a"), Condition("name", "lte", "m")))),
        ("regex(^ECB_.*)", Condition("name", "regex", "^ECB_.*")),
        ("regex(a{1,2}|b)", Condition("name", "regex", "a{1,2}|b")),  # commas stay
        ("regex((EC)B)", Condition("name", "regex", "(EC)B")),
    ],
)
def test_functions_on_plain_fields(raw: str, expected: object) -> None:
    assert where(("name", raw)) == expected


def test_functions_on_phase_paths() -> None:
    assert where(("phases.status", "ne(failed)")) == Condition("phases.status", "ne", "failed")
    assert where(("phases.name", "in(LOAD,SEND)")) == Condition(
        "phases.name", "in", ("LOAD", "SEND")
    )


# --- dates ---------------------------------------------------------------------------------


def test_range_of_bare_dates_covers_both_whole_days() -> None:
    assert where(("start", "range(2021-07-19,2021-07-23)")) == And(
        (
            Condition("start", "gte", "2021-07-19T00:00:00.000Z"),
            Condition("start", "lte", "2021-07-23T23:59:59.999Z"),
        )
    )


@pytest.mark.parametrize(
    ("raw", "op", "bound"),
    [
        ("gt(2021-07-01)", "gt", "2021-07-01T23:59:59.999Z"),  # after the day
        ("gte(2021-07-01)", "gte", "2021-07-01T00:00:00.000Z"),
        ("lt(2021-07-01)", "lt", "2021-07-01T00:00:00.000Z"),  # before the day
        ("lte(2021-07-01)", "lte", "2021-07-01T23:59:59.999Z"),
        ("gt(2020-02-29)", "gt", "2020-02-29T23:59:59.999Z"),
        ("lte(2021-12-31)", "lte", "2021-12-31T23:59:59.999Z"),
    ],
)
def test_comparisons_with_bare_dates(raw: str, op: str, bound: str) -> None:
    assert where(("start", raw)) == Condition("start", op, bound)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2021-07-01T16:30:00Z", "2021-07-01T16:30:00.000Z"),
        ("2021-07-01T16:30:00", "2021-07-01T16:30:00.000Z"),  # naive: UTC
        ("2021-07-01T18:30:00+02:00", "2021-07-01T16:30:00.000Z"),
        ("2021-07-01T16:30:00.123456-01:00", "2021-07-01T17:30:00.123Z"),
        ("2021-07-02T01:00:00+02:00", "2021-07-01T23:00:00.000Z"),  # the day before in UTC
        ("2021-07-01T23:30:00-05:30", "2021-07-02T05:00:00.000Z"),
        ("2021-07-01T16:30:07.858Z", "2021-07-01T16:30:07.858Z"),
    ],
)
def test_datetimes_are_converted_to_utc(raw: str, utc: str) -> None:
    assert where(("start", f"gt({raw})")) == Condition("start", "gt", utc)
    assert where(("end", f"lte({raw})")) == Condition("end", "lte", utc)
    assert where(("start", raw)) == Condition("start", "eq", utc)
    assert where(("phases.start", f"ne({raw})")) == Condition("phases.start", "ne", utc)


def test_datetime_range_bounds_are_taken_exactly() -> None:
    assert where(("end", "range(2021-07-19T06:00:00+02:00,2021-07-23T12:00:00Z)")) == And(
        (
            Condition("end", "gte", "2021-07-19T04:00:00.000Z"),
            Condition("end", "lte", "2021-07-23T12:00:00.000Z"),
        )
    )
    # a bare date and a datetime can be mixed
    assert where(("start", "range(2021-07-19,2021-07-23T12:00:00Z)")) == And(
        (
            Condition("start", "gte", "2021-07-19T00:00:00.000Z"),
            Condition("start", "lte", "2021-07-23T12:00:00.000Z"),
        )
    )


def test_a_bare_date_value_is_its_whole_day() -> None:
    assert where(("start", "2021-07-01")) == day("start", "2021-07-01")
    assert where(("phases.end", "2021-07-01")) == day("phases.end", "2021-07-01")
    assert where(("start", "ne(2021-07-01)")) == Not(day("start", "2021-07-01"))
    assert where(("end", "in(2021-07-01,2021-07-02T10:00:00+01:00,null)")) == Or(
        (
            day("end", "2021-07-01"),
            Condition("end", "eq", "2021-07-02T09:00:00.000Z"),
            Condition("end", "eq", None),
        )
    )


def test_null_on_date_fields() -> None:
    assert where(("end", "null")) == Condition("end", "eq", None)
    assert where(("end", "ne(null)")) == Condition("end", "ne", None)


def test_dates_on_other_fields_are_plain_strings() -> None:
    assert where(("reason", "2021-07-01")) == Condition("reason", "eq", "2021-07-01")
    assert where(("message", "gt(2021-07-01)")) == Condition("message", "gt", "2021-07-01")


# --- _limit, _skip, _sort, _project ----------------------------------------------------------


def test_page_parameters() -> None:
    query = parse_query([("_limit", "5"), ("_skip", "10")])
    assert (query.limit, query.skip) == (5, 10)
    assert parse_query([("_limit", "0")]).limit == 0
    assert parse_query([("_limit", str(MAX_LIMIT))]).limit == MAX_LIMIT
    assert parse_query([("_limit", " 7 ")]).limit == 7


def test_sort_forms() -> None:
    assert parse_query([("_sort", "-start,name")]).sort == (("start", -1), ("name", 1))
    assert parse_query([("_sort", "+name, -end")]).sort == (("name", 1), ("end", -1))
    assert parse_query([("_sort", '{"status":1,"start":-1}')]).sort == (
        ("status", 1),
        ("start", -1),
    )
    assert parse_query([("_sort", "_id")]).sort == (("_id", 1),)
    assert parse_query([("_sort", "loaderMessage,-runAs")]).sort == (
        ("loaderMessage", 1),
        ("runAs", -1),
    )


def test_project_forms() -> None:
    assert parse_query([("_project", "name,status")]).project == ("name", "status")
    assert parse_query([("_project", '{"name":1,"status":0,"end":true}')]).project == (
        "name",
        "end",
    )
    assert parse_query([("_project", "phases.name,name")]).project == ("phases.name", "name")
    # a path inside a kept path, or a path given twice, adds nothing
    assert parse_query([("_project", "phases.name,phases,name,name")]).project == (
        "phases",
        "name",
    )


# --- errors: each is a BadRequest whose message starts with the parameter's name -------------


@pytest.mark.parametrize(
    ("param", "value", "words"),
    [
        # unknown function
        ("status", "foo(x)", "unknown function 'foo'"),
        ("start", "between(2021-07-01,2021-07-02)", "unknown function 'between'"),
        ("name", "REGEX(x)", "unknown function 'REGEX'"),
        # wrong argument count
        ("start", "range(2021-07-19)", "range() takes two values, got 1"),
        ("name", "range(a,b,c)", "range() takes two values, got 3"),
        ("name", "range()", "range() takes two values, got 0"),
        ("name", "gt()", "gt() takes one value, got 0"),
        ("name", "gte(a,b)", "gte() takes one value, got 2"),
        ("name", "lt(a,b)", "lt() takes one value, got 2"),
        ("start", "lte()", "lte() takes one value, got 0"),
        ("status", "ne(a,b)", "ne() takes one value, got 2"),
        ("status", "in()", "in() needs at least one value"),
        ("status", "in( )", "in() needs at least one value"),
        # bad dates
        ("start", "range(2021-07-19,yesterday)", "'yesterday' is not a date"),
        ("start", "2021-13-01", "'2021-13-01' is not a date"),
        ("start", "gt(2021-02-30)", "'2021-02-30' is not a date"),
        ("end", "lt(notadate)", "'notadate' is not a date"),
        ("phases.start", "gte(2021-07-01T25:00:00Z)", "is not a date"),
        ("start", "ne(07/01/2021)", "'07/01/2021' is not a date"),
        ("end", "in(2021-07-01,soon)", "'soon' is not a date"),
        ("start", "range(null,2021-07-01)", "'null' is not a date"),
        # bad regular expressions
        ("name", "regex(()", "bad regular expression '('"),
        ("name", "regex([a-)", "bad regular expression '[a-'"),
        ("phases.name", "regex(*LOAD)", "bad regular expression"),
        # operators smuggled into a value
        ("name", '{"$where":"1"}', "operators are not allowed"),
        ("status", '{"$ne":null}', "operators are not allowed"),
        ("name", "$where", "operators are not allowed"),
        ("start", '{"$gt":""}', "operators are not allowed"),
        # _limit
        ("_limit", "-5", "-5 is out of range (0 to 10000)"),
        ("_limit", "-2", "out of range"),
        ("_limit", "abc", "'abc' is not a whole number"),
        ("_limit", "1.5", "'1.5' is not a whole number"),
        ("_limit", "", "is not a whole number"),
        ("_limit", "10001", "10001 is out of range (0 to 10000)"),
        ("_limit", "99999999999999999999", "out of range"),
        # _skip
        ("_skip", "-1", "-1 is out of range"),
        ("_skip", "ten", "'ten' is not a whole number"),
        # unknown underscore parameters
        ("_foo", "1", "unknown query parameter"),
        ("_meta.worker", "w1", "unknown query parameter"),
        ("_where", "1", "unknown query parameter"),
        # _sort
        ("_sort", '{"start":', "malformed JSON"),
        ("_sort", "{start: -1}", "malformed JSON"),
        ("_sort", '["start"]', "is not a field name"),
        ("_sort", '{"start": 2}', "direction of 'start' must be 1 or -1"),
        ("_sort", '{"start": true}', "direction of 'start' must be 1 or -1"),
        ("_sort", '{"start": "-1"}', "direction of 'start' must be 1 or -1"),
        ("_sort", "{}", "no sort key given"),
        ("_sort", "", "no sort key given"),
        ("_sort", "-", "is not a field name"),
        ("_sort", "nosuchfield", "cannot sort by 'nosuchfield'"),
        ("_sort", "-strat", "cannot sort by 'strat'"),
        ("_sort", "phases.start", "cannot sort by 'phases.start'"),
        ("_sort", "_meta.heartbeat", "cannot sort by '_meta.heartbeat'"),
        ("_sort", "start,-start", "'start' is given twice"),
        ("_sort", "start;drop", "is not a field name"),
        # _project
        ("_project", '{"name":', "malformed JSON"),
        ("_project", "name,bad field", "'bad field' is not a field name"),
        ("_project", "[1]", "is not a field name"),
        # bad field names
        ("na me", "x", "'na me' is not a field name"),
        ("phases..name", "x", "is not a field name"),
        ("1abc", "x", "is not a field name"),
        ("name;drop", "x", "is not a field name"),
        ("phases.na'me", "x", "is not a field name"),
        ('phases.na"me', "x", "is not a field name"),
        ("$where", "1", "is not a field name"),
        ("name.", "x", "is not a field name"),
        ("name\n", "x", "is not a field name"),
    ],
)
def test_errors_name_the_parameter(param: str, value: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query([("name", "ECB_FX"), (param, value)])
    message = str(caught.value)
    assert message.startswith(f"{param}: "), message
    assert words in message
    assert caught.value.status_code == 400


def test_errors_after_valid_parameters_still_raise() -> None:
    with pytest.raises(BadRequest, match=r"^status: unknown function 'bad'"):
        parse_query(
            [("name", "ECB_FX"), ("start", "range(2021-07-19,2021-07-23)"), ("status", "bad(1)")]
        )


def test_limit_minus_one_means_as_many_as_allowed() -> None:
    # `_limit=-1` is kept as "everything" (up to MAX_LIMIT); other negatives are refused above
    assert parse_query([("_limit", "-1")]).limit == MAX_LIMIT
