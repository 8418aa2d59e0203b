"""`_filter`: boolean expressions and MongoDB-style JSON, parsed into the same filter tree."""

from __future__ import annotations

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.query import SAFE_OPERATORS, And, Condition, Node, Not, Or, parse_query


def where(value: str) -> Node | None:
    return parse_query([("_filter", value)]).where


def eq(field: str, value: object) -> Condition:
    return Condition(field, "eq", value)


FAILED, RUNNING, ECB = eq("status", "failed"), eq("status", "running"), eq("name", "ECB_FX")


# --- expressions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("status=failed", FAILED),
        ("  status = failed  ", FAILED),
        ("(status=failed or status=running) and name=ECB_FX", And((Or((FAILED, RUNNING)), ECB))),
        # and binds tighter than or
        ("status=failed or status=running and name=ECB_FX", Or((FAILED, And((RUNNING, ECB))))),
        ("status=failed and name=ECB_FX or status=running", Or((And((FAILED, ECB)), RUNNING))),
        ("status=failed or status=running or name=ECB_FX", Or((FAILED, RUNNING, ECB))),
        ("not status=failed", Not(FAILED)),
        ("not not status=failed", Not(Not(FAILED))),
        ("not (status=failed or status=running)", Not(Or((FAILED, RUNNING)))),
        ("not(status=failed)", Not(FAILED)),
        ("NOT status=failed AND name=ECB_FX", And((Not(FAILED), ECB))),
        ("((status=failed))", FAILED),
        ("status=failed and(name=ECB_FX)", And((FAILED, ECB))),
    ],
)
def test_boolean_structure(text: str, tree: Node) -> None:
    assert where(text) == tree


@pytest.mark.parametrize(
    ("text", "field"),
    [("order=1", "order"), ("status=1 and android=2", "android"), ("notes=1", "notes"),
     ("data.order=1 and data.android=2 or data.notes=1", None)],
)  # fmt: skip
def test_keywords_are_only_keywords_on_their_own(text: str, field: str | None) -> None:
    """`order`, `android`, `notes` are read as field names, not as `or`, `and`, `not`: the
    schema refuses them by name (under `data` any name is a field)."""
    if field is None:
        assert where(text) == Or(
            (And((eq("data.order", "1"), eq("data.android", "2"))), eq("data.notes", "1"))
        )
        return
    with pytest.raises(BadRequest, match=f"^_filter: '{field}' is not a field of an execution"):
        where(text)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("status!=failed", Condition("status", "ne", "failed")),
        ("status != null", Condition("status", "ne", None)),
        ("name>DEMO", Condition("name", "gt", "DEMO")),
        ("name>=DEMO", Condition("name", "gte", "DEMO")),
        ("name<DEMO", Condition("name", "lt", "DEMO")),
        ("name<=DEMO", Condition("name", "lte", "DEMO")),
        # the value functions, as in a filter parameter
        ("status=in(failed,running)", Condition("status", "in", ("failed", "running"))),
        ("status=ne(null)", Condition("status", "ne", None)),
        ("name=regex(^(ECB|FX)_.*$)", Condition("name", "regex", "^(ECB|FX)_.*$")),
        ("name=regex(a\\)b)", Condition("name", "regex", "a\\)b")),
        # dates: a bare date is its whole day, whichever the operator
        (
            "start=range(2021-07-19, 2021-07-23)",
            And(
                (
                    Condition("start", "gte", "2021-07-19T00:00:00.000Z"),
                    Condition("start", "lte", "2021-07-23T23:59:59.999Z"),
                )
            ),
        ),
        ("start>2021-07-19", Condition("start", "gt", "2021-07-19T23:59:59.999Z")),
        ("start<2021-07-19", Condition("start", "lt", "2021-07-19T00:00:00.000Z")),
        ("start>=2021-07-19T18:30:00+02:00", Condition("start", "gte", "2021-07-19T16:30:00.000Z")),
        ("end=null", Condition("end", "eq", None)),
        # quoted values: spaces, parentheses and keywords are plain text
        ('message="Completed Successfully"', eq("message", "Completed Successfully")),
        ("message='a \\'b\\' c'", eq("message", "a 'b' c")),
        ('message="regex(x)"', eq("message", "regex(x)")),
        ('message="x or y"', eq("message", "x or y")),
        ('name!="ECB_FX"', Condition("name", "ne", "ECB_FX")),
        # dotted paths
        ("phases.status=failed", eq("phases.status", "failed")),
        ("data.series.2021-07-19=#ECB_FX.X", eq("data.series.2021-07-19", "#ECB_FX.X")),
        ("_id=e01", eq("_id", "e01")),
    ],
)
def test_conditions(text: str, tree: Node) -> None:
    assert where(text) == tree


def test_filter_is_anded_with_the_other_filters() -> None:
    query = parse_query([("name", "ECB_FX"), ("_filter", "status=failed or status=running")])
    assert query.where == And((ECB, Or((FAILED, RUNNING))))
    twice = parse_query([("_filter", "status=failed"), ("_filter", "name=ECB_FX")])
    assert twice.where == And((FAILED, ECB))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("(status=failed", "unbalanced parentheses: '(' at position 0 is never closed"),
        ("((status=failed)", "unbalanced parentheses: '(' at position 0 is never closed"),
        ("status=failed)", "unbalanced parentheses: ')' at position 13 closes nothing"),
        (")", "unbalanced parentheses: ')' at position 0 closes nothing"),
        ("()", "empty parentheses at position 0"),
        ("status=in(a,b", "unbalanced parentheses: '(' at position 9 is never closed"),
        ("status=failed name=x", "expected 'and', 'or' or the end at position 14, found 'name=x'"),
        ("(status=failed name=x)", "expected 'and', 'or' or ')' at position 15"),
        ("status=failed and", "expected a condition such as status=failed at the end"),
        (
            "status=failed or or name=x",
            "expected a condition at position 17, found the keyword 'or'",
        ),
        ("and status=failed", "expected a condition at position 0, found the keyword 'and'"),
        ("not", "expected a condition such as status=failed at the end"),
        ("status", "expected =, !=, >, >=, < or <= after 'status' at position 6, found the end"),
        ("status~failed", "expected =, !=, >, >=, < or <= after 'status'"),
        ("status=", "'status' has no value at position 7"),
        ("(status=)", "'status' has no value at position 8"),
        ("=failed", "expected a condition such as status=failed at position 0, found '=failed'"),
        ("1status=x", "expected a condition such as status=failed at position 0"),
        ('message="open', 'unterminated quote: " at position 8 is never closed'),
        ("_meta.worker=w1", "'_meta.worker' is not a field of an execution"),
        ("phases..name=x", "'phases..name' is not a field name"),
        ("status=foo(x)", "status: unknown function 'foo'"),
        ("start=range(2021-07-19)", "start: range() takes two values, got 1"),
        ("start=range(2021-07-19,someday)", "start: 'someday' is not a date"),
        ("start>yesterday", "start: 'yesterday' is not a date"),
        ("name=regex(()", "unbalanced parentheses: '(' at position 10 is never closed"),
        ("name=regex(a[)", "name: bad regular expression 'a['"),
        ("message='it''s'", "expected 'and', 'or' or the end at position 12, found ''s''"),
        ("not=1", "expected a condition at position 0, found the keyword 'not'"),
        ("and=1", "expected a condition at position 0, found the keyword 'and'"),
        ('name={"$where":"1"}', "name: operators are not allowed in a value"),
        ("name=$where", "name: operators are not allowed in a value"),
        ("name>gt(a)", "name: '>' takes a plain value, not 'gt(a)'"),
        ("status=" + "(" * 0 + "x" + " and status=x" * 100, "too many conditions (at most 100)"),
        ("(" * 30 + "status=x" + ")" * 30, "nested too deeply (at most 20 levels)"),
        ("not " * 30 + "status=x", "nested too deeply"),
    ],
)
def test_expression_errors(text: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query([("_filter", text)])
    message = str(caught.value)
    assert message.startswith("_filter: "), message
    assert words in message, message


# --- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ('{"status": "failed"}', FAILED),
        ('{"status": "failed", "name": "ECB_FX"}', And((FAILED, ECB))),
        ('{"$or": [{"status": "failed"}, {"status": "running"}]}', Or((FAILED, RUNNING))),
        ('{"$and": [{"status": "failed"}]}', FAILED),
        ('{"$nor": [{"status": "failed"}, {"name": "ECB_FX"}]}', Not(Or((FAILED, ECB)))),
        ('{"end": null}', eq("end", None)),
        ('{"status": {"$eq": "failed"}}', FAILED),
        ('{"status": {"$ne": "failed"}}', Condition("status", "ne", "failed")),
        (
            '{"start": {"$gte": "2021-07-19", "$lt": "2021-07-24"}}',
            And((Condition("start", "gte", "2021-07-19"), Condition("start", "lt", "2021-07-24"))),
        ),
        ('{"status": {"$in": ["failed", null]}}', Condition("status", "in", ("failed", None))),
        ('{"status": {"$in": []}}', Condition("status", "in", ())),
        (
            '{"status": {"$nin": ["failed", "running"]}}',
            Not(Condition("status", "in", ("failed", "running"))),
        ),
        ('{"end": {"$exists": true}}', Condition("end", "exists", True)),
        ('{"end": {"$exists": false}}', Not(Condition("end", "exists", True))),
        ('{"name": {"$regex": "^ECB"}}', Condition("name", "regex", "^ECB")),
        ('{"name": {"$regex": "^ecb", "$options": "i"}}', Condition("name", "regex", "(?i)^ecb")),
        ('{"name": {"$not": {"$regex": "^ECB"}}}', Not(Condition("name", "regex", "^ECB"))),
        ('{"phases.status": "failed"}', eq("phases.status", "failed")),
        ('{"data.n": {"$gt": 5}}', Condition("data.n", "gt", 5)),
        ('{"data.n": 2.5}', eq("data.n", 2.5)),
        ("{}", And(())),
        ('{"end": {"$gte": null}}', Condition("end", "gte", None)),
        # dates are compared as written: JSON is MongoDB's language
        ('{"start": "2021-07-19"}', eq("start", "2021-07-19")),
    ],
)
def test_json_filters(text: str, tree: Node) -> None:
    assert where(text) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("{name: 1}", eq("name", 1)),
        ('{status: "failed", name: "ECB_FX"}', And((FAILED, ECB))),
        ('{ "status" : "failed" , name : "ECB_FX" }', And((FAILED, ECB))),
        ('{$or: [{status: "failed"}, {status: "running"}]}', Or((FAILED, RUNNING))),
        ("{_id: /AB/}", Condition("_id", "regex", "AB")),
        ("{_id:/AB/}", Condition("_id", "regex", "AB")),
        ("{name: /^ecb/i}", Condition("name", "regex", "(?i)^ecb")),
        # RE2 has no x flag: its whitespace and comments are taken out when the query is read
        ("{name: /^ecb/imx}", Condition("name", "regex", "(?im)^ecb")),
        ("{name: /^ e c b # the name\n _ [ ]/x}", Condition("name", "regex", "^ecb_[ ]")),
        ("{name: /a\\/b/}", Condition("name", "regex", "a/b")),  # \/ is a slash
        ("{name: /[/]b/}", Condition("name", "regex", "[/]b")),  # so is / in a class
        ("{name: /a\\d+/}", Condition("name", "regex", "a\\d+")),
        ('{name: /a"b/}', Condition("name", "regex", 'a"b')),
        ("{name: {$not: /^ECB/}}", Not(Condition("name", "regex", "^ECB"))),
        ("{name: {$regex: /^ecb/i}}", Condition("name", "regex", "(?i)^ecb")),
        ('{name: {$regex: "^ecb", $options: "i"}}', Condition("name", "regex", "(?i)^ecb")),
        ("{phases.status: /fail/, end: null}", And((Condition("phases.status", "regex", "fail"),
                                                   eq("end", None)))),
        ("{data.series.2021-07-01: -1.5e1}", eq("data.series.2021-07-01", -15.0)),
        ("{end: {$exists: false}}", Not(Condition("end", "exists", True))),
        ('{status: {$in: ["failed", null]}}', Condition("status", "in", ("failed", None))),
        ("{}", And(())),
    ],
)  # fmt: skip
def test_relaxed_json_filters(text: str, tree: Node) -> None:
    """The platform's relaxed form: bare keys and /regex/flags literals."""
    assert where(text) == tree


@pytest.mark.parametrize("operator", ["$where", "$function", "$expr", "$accumulator", "$jsonSchema",
                                      "$text", "$comment", "$elemMatch", "$size", "$all", "$type",
                                      "$mod", "$geoWithin", "$near"])  # fmt: skip
def test_unsafe_operators_are_refused_by_name(operator: str) -> None:
    for text in (
        f'{{"{operator}": "sleep(1000) || true"}}',
        f'{{"name": {{"{operator}": 1}}}}',
        f'{{"$or": [{{"status": "failed"}}, {{"name": {{"{operator}": 1}}}}]}}',
        f'{{"name": {{"$not": {{"{operator}": 1}}}}}}',
    ):
        with pytest.raises(BadRequest) as caught:
            parse_query([("_filter", text)])
        message = str(caught.value)
        assert message.startswith(f"_filter: operator '{operator}' is not allowed"), message
        assert "allowed: $and, $or, $nor, $not" in message


def test_every_safe_operator_is_accepted() -> None:
    samples = {
        "$and": '{"$and": [{"data.a": 1}]}',
        "$or": '{"$or": [{"data.a": 1}]}',
        "$nor": '{"$nor": [{"data.a": 1}]}',
        "$not": '{"data.a": {"$not": {"$eq": 1}}}',
        "$eq": '{"data.a": {"$eq": 1}}',
        "$ne": '{"data.a": {"$ne": 1}}',
        "$gt": '{"data.a": {"$gt": 1}}',
        "$gte": '{"data.a": {"$gte": 1}}',
        "$lt": '{"data.a": {"$lt": 1}}',
        "$lte": '{"data.a": {"$lte": 1}}',
        "$in": '{"data.a": {"$in": [1]}}',
        "$nin": '{"data.a": {"$nin": [1]}}',
        "$exists": '{"data.a": {"$exists": true}}',
        "$regex": '{"data.a": {"$regex": "x"}}',
    }
    assert set(samples) == set(SAFE_OPERATORS)
    for text in samples.values():
        assert where(text) is not None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"status": ', "malformed JSON: expected a value, found the end at position 11"),
        ("{status: failed}", "malformed JSON: the value 'failed' must be quoted"),
        ("{status: 'failed'}", "malformed JSON: strings take double quotes at position 9"),
        ("{'status': 1}", "malformed JSON: field names take double quotes or none"),
        ("{start: 2021-07-19}", "the value '2021-07-19' must be quoted"),
        ("{_id: /AB}", "malformed JSON: unterminated regular expression (/pattern/flags) at posi"),
        ("{_id: /AB\\/}", "unterminated regular expression"),
        ("{_id: //}", "malformed JSON: empty regular expression at position 6"),
        ("{_id: /AB/g}", "regular expression flag 'g' is not supported (use some of i, m, s, x)"),
        ("{_id: /(/}", "_id: bad regular expression"),
        ("{name: {$regex: /x/i, $options: m}}", "the value 'm' must be quoted"),
        ('{name: {$regex: /x/i, $options: "m"}}', "a /regex/ with flags and '$options' in one"),
        ('{name: {$options: "m", $regex: /x/i}}', "a /regex/ with flags and '$options' in one"),
        ("{name: {$in: [/a/]}}", "value of 'name' must be a string, number or null, not an object"),
        ("{$or: [/a/]}", "operator '$regex' must be applied to a field"),
        ("{name: /a/ /b/}", "expected ',' or '}' at position 11"),
        ("{a b: 1}", "malformed JSON: expected ':' after 'a' at position 3"),
        ("{: 1}", "malformed JSON: expected a field name at position 1"),
        ("{a: 1,}", "malformed JSON: expected a field name at position 6"),
        ("{a: [1,]}", "malformed JSON: expected a value at position 7"),
        ("{a: [1 2]}", "malformed JSON: expected ',' or ']' at position 7"),
        ("{a: 1} {b: 2}", "malformed JSON: unexpected text after the filter at position 7"),
        ("{a: 1", "malformed JSON: expected ',' or '}' at position 5"),
        ('{a: "x}', "malformed JSON: Unterminated string starting at"),
        ("{a: NaN}", "the value 'NaN' must be quoted"),
        ("{a:" * 100 + "1" + "}" * 100, "malformed JSON: nested too deeply"),
        ("{$where: /x/}", "operator '$where' is not allowed"),
        ("{a: " + "1" * 5000 + "}", "malformed JSON: the number is too long at position 4"),
        ('{"a": ' + "1" * 5000 + "}", "malformed JSON: Exceeds the limit"),
        ("{$or: [{status: /x/}]" + "}" * 3, "unexpected text after the filter"),
        ('["status"]', "a filter must be a JSON object"),
        ('{"$or": {"status": "failed"}}', "'$or' takes a non-empty array of filters"),
        ('{"$or": []}', "'$or' takes a non-empty array of filters"),
        ('{"$or": ["status"]}', "a filter must be a JSON object such as"),
        ('{"$eq": 1}', "operator '$eq' must be applied to a field"),
        (
            '{"name": {"first": "x"}}',
            "value of 'name' must be a string, number or null, or an object",
        ),
        ('{"name": {"$eq": "x", "first": 1}}', "'name' mixes operators and fields"),
        ('{"name": ["a"]}', "value of 'name' must be a string, number or null, not an array"),
        ('{"name": true}', "value of 'name' must be a string, number or null, not a boolean"),
        ('{"name": {"$eq": {"a": 1}}}', "not an object"),
        ('{"name": {"$in": "a"}}', "'$in' of 'name' takes an array of values"),
        ('{"name": {"$in": [["a"]]}}', "not an array"),
        ('{"name": {"$exists": 1}}', "'$exists' of 'name' takes true or false"),
        ('{"name": {"$regex": 1}}', "'$regex' of 'name' takes a string"),
        ('{"name": {"$regex": "("}}', "name: bad regular expression"),
        ('{"name": {"$regex": "x", "$options": "g"}}', "'$options' of 'name' takes some of"),
        ('{"name": {"$options": "i"}}', "'$options' of 'name' needs '$regex'"),
        ('{"name": {"$not": "x"}}', "'$not' of 'name' takes an object of operators"),
        ('{"name": {"$and": [{"a": 1}]}}', "operator '$and' cannot be applied to the field 'name'"),
        ('{"name": NaN}', "malformed JSON"),
        ('{"name": Infinity}', "malformed JSON"),
        ('{"name": 1e400}', "value of 'name' must be a finite number"),
        ('{"name": 123456789012345678901234567890}', "value of 'name' is out of range"),
        ('{"_meta.worker": "w"}', "'_meta.worker' is not a field of an execution"),
        ('{"bad field": 1}', "'bad field' is not a field name"),
        ('{"$or": [' * 30 + '{"a": 1}' + "]}" * 30, "nested too deeply"),
        ("[" * 100000 + "]" * 100000, "malformed JSON"),
    ],
)
def test_json_errors(text: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query([("_filter", text)])
    message = str(caught.value)
    assert message.startswith("_filter: "), message
    assert words in message, message
