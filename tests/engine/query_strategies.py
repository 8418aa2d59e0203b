"""A corpus of executions and hypothesis strategies for list queries, valid and garbage.

Shared by the property tests of the stores (`tests/engine/store/test_query_properties.py`) and
of the API (`tests/api/test_api_query_properties.py`); its `DOCS` are also the API tests'
`corpus` (tests/api/conftest.py).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from hypothesis import strategies as st

from procexec.engine.schema import CLOSED_FIELDS
from procexec.engine.search import words
from procexec.engine.store.mongo_query import mirror

PROD = "production"
NAMES = ["ECB_FX", "DEMO", "FX_ECB", "BOE_RATES", "Café_Ünï", "ECB-FX2"]
STATUSES = ["triggered", "running", "waiting", "success", "warning", "failed"]
TRIGGERS = ["scheduled", "manual", "subscription"]
PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
LOG_WORDS = ["info", "warning", "error", "Completed", "timeout", "refused", "Connection", "naïve",
             "EURUSD", "#ECB_FX.EURUSD:SPOT", "retry", "série", "42", "3.14"]  # fmt: skip
DAYS = ["2021-07-18", "2021-07-19", "2021-07-20", "2021-07-21", "2021-07-22", "2021-07-23"]


def _stamp(day: str, rng: random.Random) -> str:
    return f"{day}T{rng.choice(['00:00:00.000', '10:30:00.000', '23:59:59.999', '12:00:00.000'])}Z"


def corpus(count: int = 48, seed: int = 6) -> list[dict[str, Any]]:
    """Executions with every shape the queries meet: missing fields, arrays, numbers, accents."""
    rng = random.Random(seed)
    docs = []
    for number in range(count):
        name = rng.choice(NAMES)
        status = rng.choice(STATUSES)
        start = _stamp(rng.choice(DAYS), rng)
        doc: dict[str, Any] = {
            "_id": f"r{number:03d}",
            "service": rng.choice(["ETL", "ETL", "REPORT"]),
            "name": name,
            "environment": PROD if number % 7 else "staging",
            "trigger": rng.choice(TRIGGERS),
            "status": status,
            "message": rng.choice(
                [f"{name} {status}", "Completed Successfully", "Failed in LOAD: timeout"]
            ),
            "reason": rng.choice(
                [f"crontab({name})", "Manually triggered by alice", "Subscription: DEMO"]
            ),
            "start": start,
            "runAs": rng.choice(["com_walkfares", "alice", "bob"]),
            "phases": [],
        }
        for phase in PHASES[: rng.randrange(5)]:
            entry: dict[str, Any] = {
                "name": phase,
                "start": start,
                "status": rng.choice(["running", "success", "failed"]),
                "message": f"Completed {phase}",
                "log": [
                    " ".join(rng.choice(LOG_WORDS) for _ in range(rng.randrange(1, 5)))
                    for _ in range(rng.randrange(3))
                ],
            }
            if rng.random() < 0.7:
                entry["end"] = start
            doc["phases"].append(entry)
        if rng.random() < 0.6:
            doc["end"] = _stamp(rng.choice(DAYS), rng)
        if rng.random() < 0.4:
            doc["loaderMessage"] = f"Updated {rng.randrange(40)} series for {start[:10]}"
            doc["data"] = {
                "series": {start[:10]: [f"#{name}.S{i}" for i in range(rng.randrange(3))]},
                "count": rng.choice([3, 7, "7", 2.5]),
            }
        if number % 11 == 5:
            del doc["message"]
        if number % 13 == 4:
            doc["reason"] = None
        docs.append(doc)
    return docs


DOCS = corpus()
#: values met in the corpus, by field: conditions on them find something
VALUES: dict[str, list[str]] = {
    "name": NAMES,
    "status": STATUSES,
    "trigger": TRIGGERS,
    "runAs": ["com_walkfares", "alice", "bob", "carol"],
    "service": ["ETL", "REPORT"],
    "message": sorted({doc["message"] for doc in DOCS if "message" in doc}),
    "reason": sorted({doc["reason"] for doc in DOCS if doc.get("reason")}),
    "loaderMessage": sorted({doc["loaderMessage"] for doc in DOCS if "loaderMessage" in doc})[:5],
    "_id": [doc["_id"] for doc in DOCS[:12]],
    "phases.name": PHASES,
    "phases.status": ["running", "success", "failed"],
    "phases.message": [f"Completed {phase}" for phase in PHASES],
    "data.series.2021-07-20": ["#ECB_FX.S0", "#DEMO.S1", "#FX_ECB.S0"],
    "data.count": ["7", "3"],
}
DATE_FIELDS = ["start", "end", "phases.start", "phases.end"]
DATE_VALUES = [
    *DAYS,
    "2021-07-20T10:30:00Z",
    "2021-07-21T12:00:00.000Z",
    "2021-07-19T01:00:00+02:00",
]
SORTABLE = ["_id", "service", "name", "trigger", "status", "message", "reason", "start", "end",
            "runAs", "loaderMessage"]  # fmt: skip
REGEXES = ["^E", "FX$", "[0-9]", "ECB|DEMO", "^(DEMO|BOE)", "a", "ed$", "^C.*y$", "(?i)^ecb", "é"]

#: the words and phrases the corpus's searched texts hold
SEARCH_TEXTS = [
    text
    for doc in DOCS
    for text in [doc["_id"], doc.get("name"), doc.get("message"), doc.get("reason")]
    + [line for phase in doc["phases"] for line in phase["log"]]
    if isinstance(text, str)
]
SEARCH_WORDS = [*sorted({word for text in SEARCH_TEXTS for word in words(text)}), "nowhere"]


_CALL = re.compile(r"^[A-Za-z]+\(.*\)$", re.DOTALL)


def _plain(value: str) -> bool:
    """A value that can stand in a function's arguments."""
    return not any(char in value for char in ",()") and not value.startswith(("{", "$"))


@st.composite
def condition(draw: st.DrawFn) -> tuple[str, str]:
    """A `field=value` filter parameter, value functions included."""
    if draw(st.booleans()):
        field = draw(st.sampled_from(DATE_FIELDS))
        values = DATE_VALUES
    else:
        field = draw(st.sampled_from(sorted(VALUES)))
        values = list(VALUES[field])
        if field not in CLOSED_FIELDS:  # a closed set's field takes only its values
            values.append(draw(st.sampled_from(["x", "ECB", "b", "Z"])))
    plain = [value for value in values if _plain(value)]
    one = draw(st.sampled_from(plain))
    kind = draw(st.sampled_from(["eq", "null", "ne", "nenull", "cmp", "in", "range", "regex"]))
    if kind == "eq":  # a value written like a function call can only be matched by _filter
        literal = [v for v in values if not v.startswith(("{", "$")) and not _CALL.match(v)]
        return field, draw(st.sampled_from(literal))
    if kind == "null":
        return field, "null"
    if kind == "ne":
        return field, f"ne({one})"
    if kind == "nenull":
        return field, "ne(null)"
    if kind == "cmp":
        return field, f"{draw(st.sampled_from(['gt', 'gte', 'lt', 'lte']))}({one})"
    if kind == "in":
        several = draw(st.lists(st.sampled_from([*plain, "null"]), min_size=1, max_size=3))
        return field, f"in({','.join(several)})"
    if kind == "range":
        low, high = sorted(draw(st.lists(st.sampled_from(plain), min_size=2, max_size=2)))
        return field, f"range({low},{high})"
    return field, f"regex({draw(st.sampled_from(REGEXES))})"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> str:
    """A `_filter` boolean expression."""
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        field, raw = draw(condition())
        operator = draw(st.sampled_from(["=", "=", "!=", ">", "<=", ">="]))
        if raw == "null":
            operator = draw(st.sampled_from(["=", "!="]))
        if operator != "=" or " " in raw or draw(st.booleans()):
            if raw.startswith(("gt(", "gte(", "lt(", "lte(", "ne(", "in(", "range(", "regex(")):
                operator = "="
            elif operator != "=" or " " in raw:
                return f"{field}{operator}{_quote(raw)}"
        return f"{field}{operator}{raw}"
    kind = draw(st.sampled_from(["and", "or", "not", "group"]))
    if kind == "not":
        return f"not {draw(expression(depth + 1))}"
    if kind == "group":
        return f"({draw(expression(depth + 1))})"
    items = draw(st.lists(expression(depth + 1), min_size=2, max_size=3))
    return f" {kind.upper() if draw(st.booleans()) else kind} ".join(items)


JSON_SCALARS = st.one_of(st.none(), st.integers(-3, 10), st.sampled_from([2.5, 7.0]))


@st.composite
def json_filter(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """A MongoDB-style `_filter` object over the safe operators."""
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        key = draw(st.sampled_from(["$and", "$or", "$nor"]))
        return {key: draw(st.lists(json_filter(depth + 1), min_size=1, max_size=3))}
    field = draw(st.sampled_from([*sorted(VALUES), *DATE_FIELDS, "data.count", "data.ratio"]))
    pool = VALUES.get(field, DATE_VALUES)
    # a closed set's field takes only its values, or null
    scalars = st.none() if field in CLOSED_FIELDS else JSON_SCALARS
    value = draw(st.one_of(st.sampled_from(pool), scalars))
    operator = draw(st.sampled_from(["value", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in",
                                     "$nin", "$exists", "$regex", "$not"]))  # fmt: skip
    if operator == "value":
        return {field: value}
    if operator in ("$in", "$nin"):
        return {
            field: {operator: draw(st.lists(st.one_of(st.sampled_from(pool), scalars), max_size=3))}
        }
    if operator == "$exists":
        return {field: {"$exists": draw(st.booleans())}}
    if operator == "$regex":
        spec: dict[str, Any] = {"$regex": draw(st.sampled_from(REGEXES[:-2]))}
        if draw(st.booleans()):
            spec["$options"] = "i"
        return {field: spec}
    if operator == "$not":
        inner = draw(st.sampled_from(["$eq", "$gt", "$in", "$regex"]))
        argument: Any = [value] if inner == "$in" else value
        if inner == "$regex":
            argument = draw(st.sampled_from(REGEXES[:-2]))
        return {field: {"$not": {inner: argument}}}
    return {field: {operator: value}}


@st.composite
def search(draw: st.DrawFn, depth: int = 0) -> str:
    """A `_search` text in the platform's syntax."""
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        if draw(st.integers(0, 3)) == 0:
            text = draw(st.sampled_from(SEARCH_TEXTS))
            found = text.split()
            start = draw(st.integers(0, max(0, len(found) - 1)))
            phrase = " ".join(found[start : start + draw(st.integers(1, 3))])
            if words(phrase):
                return _quote(phrase) if " " in phrase else phrase.replace('"', "")
        word = draw(st.sampled_from(SEARCH_WORDS))
        return word.upper() if draw(st.booleans()) else word
    kind = draw(st.sampled_from(["and", "or", "not", "group"]))
    if kind == "not":
        return "-" + draw(search(depth + 1))
    if kind == "group":
        return f"({draw(search(depth + 1))})"
    items = draw(st.lists(search(depth + 1), min_size=2, max_size=3))
    return (" " if kind == "and" else draw(st.sampled_from(["|", " | "]))).join(items)


@st.composite
def sort(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(SORTABLE), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        return json.dumps({key: draw(st.sampled_from([1, -1])) for key in keys})
    return ",".join(("-" if draw(st.booleans()) else "") + key for key in keys)


@st.composite
def valid_params(draw: st.DrawFn) -> list[tuple[str, str]]:
    """The parameters of a valid list query."""
    params: list[tuple[str, str]] = draw(st.lists(condition(), max_size=2))
    if draw(st.booleans()):
        params.append(("_filter", draw(expression())))
    if draw(st.integers(0, 3)) == 0:
        params.append(("_filter", json.dumps(draw(json_filter()))))
    if draw(st.booleans()):
        params.append(("_search", draw(search())))
    if draw(st.booleans()):
        params.append(("_sort", draw(sort())))
    if draw(st.booleans()):
        params.append(("_skip", str(draw(st.integers(0, 12)))))
    if draw(st.booleans()):
        params.append(("_limit", str(draw(st.integers(0, 15)))))
    return params


#: the fields `_fieldinfo` is asked about
FIELDINFO_FIELDS = [*SORTABLE, "phases.name", "phases.status", "phases.log", "data.count",
                    "data.series.2021-07-20", "phases", "data.nosuch"]  # fmt: skip
#: the fields a `$group` is keyed by: strings, numbers, null and missing values
KEY_FIELDS = ["status", "name", "trigger", "runAs", "service", "reason", "message", "end",
              "loaderMessage", "data.count", "data.nosuch"]  # fmt: skip
#: fields of strings (or null): `$min` and `$max` read them (mongomock cannot compare a number
#: with a string)
STRING_FIELDS = ["_id", "start", "end", "name", "status", "reason", "message", "loaderMessage"]
#: fields every execution holds: `$first` and `$last` read them (where a field is missing
#: mongomock takes the next document's, MongoDB null)
PRESENT_FIELDS = ["_id", "start", "name", "status", "trigger", "runAs"]
#: values a `$match` after the group compares with
GROUP_VALUES = [*STATUSES, *NAMES, *TRIGGERS, "7", 2.5, "2021-07-20"]


@st.composite
def pipeline(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An `_aggregate` pipeline of the safe stages, over values that both stores order alike
    (no arrays: MongoDB sorts them by an item, so groups keyed by arrays may tie)."""
    stages: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["$match", "$sort", "$skip", "$limit"]))
        if kind == "$match":
            stages.append({"$match": draw(json_filter())})
        elif kind == "$sort":
            stages.append(
                {"$sort": {draw(st.sampled_from(SORTABLE)): draw(st.sampled_from([1, -1]))}}
            )
        else:
            stages.append({kind: draw(st.integers(1, 12))})
    if draw(st.integers(0, 5)) == 0:
        stages.append({"$count": "n"})
        fields = ["n"]
    else:
        kind = draw(st.sampled_from(["null", "field", "field", "object"]))
        key: Any = None
        if kind == "field":
            key = "$" + draw(st.sampled_from(KEY_FIELDS))
        elif kind == "object":
            key = {"a": "$" + draw(st.sampled_from(KEY_FIELDS)),
                   "b": "$" + draw(st.sampled_from(KEY_FIELDS))}  # fmt: skip
        group: dict[str, Any] = {"_id": key}
        for number in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["$sum", "$sum", "$avg", "$min", "$max", "$first", "$last",
                                       "$count"]))  # fmt: skip
            if op == "$count":
                group[f"f{number}"] = {"$count": {}}
            elif op == "$sum" and draw(st.booleans()):
                group[f"f{number}"] = {"$sum": draw(st.integers(-2, 3))}
            elif op in ("$sum", "$avg"):
                group[f"f{number}"] = {op: "$" + draw(st.sampled_from(["data.count", "name"]))}
            else:
                pool = STRING_FIELDS if op in ("$min", "$max") else PRESENT_FIELDS
                group[f"f{number}"] = {op: "$" + draw(st.sampled_from(pool))}
        stages.append({"$group": group})
        fields = list(group) + (["_id.a", "_id.b"] if kind == "object" else [])
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["$match", "$match", "$sort", "$skip", "$limit", "$count"]))
        field = draw(st.sampled_from(fields))
        if kind == "$match":
            operator = draw(
                st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists"])
            )
            value = draw(st.one_of(st.none(), st.integers(0, 4), st.sampled_from(GROUP_VALUES)))
            spec = {"$exists": draw(st.booleans())} if operator == "$exists" else {operator: value}
            stages.append({"$match": {field: spec}})
        elif kind == "$sort":
            stages.append({"$sort": {field: draw(st.sampled_from([1, -1]))}})
        elif kind == "$count":
            stages.append({"$count": "m"})
            fields = ["m"]
        else:
            stages.append({kind: draw(st.integers(1, 5))})
    top = [name for name in fields if "." not in name]
    if "_id" in top and draw(st.booleans()):
        kept = draw(st.lists(st.sampled_from(top), min_size=1, unique=True))
        stages.append(
            {"$project": {name: 1 for name in kept} | ({} if "_id" in kept else {"_id": 0})}
        )
    return stages


@st.composite
def pipeline_params(draw: st.DrawFn) -> list[tuple[str, str]]:
    """The parameters beside `_aggregate`: a filter or a search now and then (most pipelines
    should meet documents), `_sort` (the order documents enter in), and `_limit`, which does
    not apply."""
    params: list[tuple[str, str]] = []
    if draw(st.integers(0, 2)) == 0:
        params.append(draw(condition()))
    if draw(st.integers(0, 4)) == 0:
        params.append(("_search", draw(search())))
    if draw(st.booleans()):
        params.append(("_sort", draw(sort())))
    if draw(st.booleans()):
        params.append(("_limit", str(draw(st.integers(0, 15)))))
    return params


def searched_words(doc: dict[str, Any]) -> list[list[str]]:
    """Each searched text of a document as its words (the reference for `_search`)."""
    text = mirror(doc)
    texts = [text["id"], text["name"], text["message"], text["reason"]]
    texts += [line for phase in text["phases"] for line in phase["log"]]
    return [value.split() for value in texts]


#: parameter names and fragments a garbage query is made of
GARBAGE_NAMES = ["name", "status", "start", "end", "phases.name", "data.series.x", "_id", "_limit",
                 "_skip", "_sort", "_project", "_filter", "_search", "_distinct", "_fieldinfo",
                 "_aggregate", "_meta.worker", "$where", "", "a b", "ünï", "_", "start.",
                 "x" * 300]  # fmt: skip
GARBAGE_FRAGMENTS = ["(", ")", "((", "range(", "in(", "gt(", "regex(", "ne(null)", ",", "{", "}",
                     '{"$where":"1"}', '{"$or":[', '"', "'", "|", "-", " and ", " or ", "not ",
                     "null", "2021-13-45", "2021-07-19", "T25:00", "-1", "99999999999999999999",
                     "$ne", "\\", "\x00", "%", "&", "=", "é", "\U0001f600", "[", "]", ":",
                     "*", '[{"$group":{"_id":"$status","n":{"$sum":1}}}]', '[{"$count":"n"}]',
                     '{"$lookup":{}}', '"$sum"', '{"$group":', "$status"]  # fmt: skip


@st.composite
def garbage_value(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=40))
    return "".join(
        draw(st.lists(st.sampled_from(GARBAGE_FRAGMENTS + SEARCH_WORDS[:20]), max_size=8))
    )


@st.composite
def garbage_params(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Parameters that may be anything: mostly malformed."""
    mixed = draw(st.lists(st.tuples(st.sampled_from(GARBAGE_NAMES), garbage_value()), max_size=4))
    if draw(st.booleans()):
        mixed += draw(valid_params())
    return draw(st.permutations(mixed))
