"""`_fieldinfo` and `_aggregate`, parsed: the pipeline's stages, every refusal (a 400 naming the
parameter and what is wrong), how they combine with the other parameters, and the helpers
behind the buckets (`field_buckets`, `distinct_key`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.query import And, Condition, distinct_key, field_buckets, parse_query
from procexec.engine.query.pipeline import (
    Accumulator,
    Count,
    Group,
    Limit,
    Match,
    Pipeline,
    Project,
    Skip,
    Sort,
)


def pipeline(stages: Any, *params: tuple[str, str]) -> Pipeline:
    query = parse_query([("_aggregate", json.dumps(stages)), *params])
    assert query.aggregate is not None
    return query.aggregate


def refusal(raw: str, *params: tuple[str, str]) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_query([("_aggregate", raw), *params])
    return str(caught.value)


# --- what a pipeline is parsed into ----------------------------------------------------------


def test_the_platforms_example() -> None:
    assert pipeline([{"$group": {"_id": "$status", "count": {"$sum": 1}}}]) == Pipeline(
        before=(),
        grouping=Group("status", (Accumulator("count", "sum", constant=1),)),
        after=(Sort((("_id", 1),)),),  # groups come in `_id` order
    )


def test_every_stage_and_accumulator() -> None:
    stages = [
        {"$match": {"status": "failed"}},
        {"$sort": {"name": 1}},
        {"$skip": 2},
        {"$limit": 50},
        {
            "$group": {
                "_id": {"name": "$name", "count": "$data.count"},
                "runs": {"$count": {}},
                "twice": {"$sum": 2.0},
                "total": {"$sum": "$data.count"},
                "mean": {"$avg": "$data.count"},
                "first": {"$min": "$start"},
                "latest": {"$max": "$end"},
                "oldest": {"$first": "$_id"},
                "newest": {"$last": "$_id"},
            }
        },
        {"$match": {"runs": {"$gt": 1}, "_id.name": "ECB_FX"}},
        {"$sort": {"runs": -1}},
        {"$project": {"runs": 1, "_id": 0, "total": 1}},
        {"$limit": 3},
        {"$count": "kept"},
    ]
    assert pipeline(stages) == Pipeline(
        before=(
            Match(Condition("status", "eq", "failed")),
            Sort((("name", 1), ("_id", 1))),  # ties broken by `_id`
            Skip(2),
            Limit(50),
        ),
        grouping=Group(
            (("name", "name"), ("count", "data.count")),
            (
                Accumulator("runs", "sum", constant=1),
                Accumulator("twice", "sum", constant=2),
                Accumulator("total", "sum", "data.count"),
                Accumulator("mean", "avg", "data.count"),
                Accumulator("first", "min", "start"),
                Accumulator("latest", "max", "end"),
                Accumulator("oldest", "first", "_id"),
                Accumulator("newest", "last", "_id"),
            ),
        ),
        after=(
            Sort((("_id", 1),)),
            Match(And((Condition("runs", "gt", 1), Condition("_id.name", "eq", "ECB_FX")))),
            Sort((("runs", -1), ("_id", -1))),
            Project(("runs", "total")),  # in the group's order
            Limit(3),
            Count("kept"),
        ),
    )


def test_documents_enter_in_the_lists_order_when_it_matters() -> None:
    group = {"$group": {"_id": None, "n": {"$sum": 1}}}
    assert pipeline([group]).before == ()
    assert pipeline([{"$limit": 5}, group], ("_sort", "name")).before == (
        Sort((("name", 1), ("_id", 1))),
        Limit(5),
    )
    first = {"$group": {"_id": "$name", "f": {"$first": "$start"}}}
    assert pipeline([first]).before == (Sort((("start", -1), ("_id", -1))),)
    assert pipeline([{"$count": "n"}], ("_sort", "name")).before == ()


def test_project_keeps_id_unless_dropped() -> None:
    group = {"$group": {"_id": "$name", "a": {"$sum": 1}, "b": {"$sum": 1}}}
    assert pipeline([group, {"$project": {"b": 1}}]).after[-1] == Project(("_id", "b"))
    assert pipeline([group, {"$project": {"_id": 1}}]).after[-1] == Project(("_id",))
    assert pipeline([group, {"$project": {"b": 1, "a": True, "_id": 0}}]).after[-1] == Project(
        ("a", "b")
    )


# --- what is refused -----------------------------------------------------------------------------


#: the fields a refusal of an unknown one lists: the execution document's one schema
KNOWN = (
    " (fields: _id, service, name, environment, trigger, status, message, reason, start, runAs, "
    "phases, end, loaderMessage, data; phases.<name|start|status|message|log|end>; any path "
    "under data)"
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[{", "_aggregate: malformed JSON: Expecting property name enclosed in double quotes "
         "at position 2"),
        ("", "_aggregate: malformed JSON: Expecting value at position 0"),
        ('{"$group": {"_id": "$status"}}', '_aggregate: expected a JSON array of stages such as '
         '[{"$group": {"_id": "$status", "count": {"$sum": 1}}}], not an object'),
        ("[]", "_aggregate: empty pipeline (it needs a $group or a $count stage)"),
        (json.dumps([{"$count": "n"}] + [{"$limit": 1}] * 20),
         "_aggregate: too many stages (21, at most 20)"),
        ('[{"$lookup": {"from": "tokens"}}]', "_aggregate: stage 1: '$lookup' is not allowed "
         "(allowed: $match, $group, $sort, $skip, $limit, $count, $project)"),
        ('[{"$count": "n"}, {"$out": "tokens"}]', "_aggregate: stage 2: '$out' is not allowed "
         "(allowed: $match, $group, $sort, $skip, $limit, $count, $project)"),
        ('[{"$merge": "tokens"}]', "_aggregate: stage 1: '$merge' is not allowed (allowed: "
         "$match, $group, $sort, $skip, $limit, $count, $project)"),
        ('[{"$where": "1"}]', "_aggregate: stage 1: '$where' is not allowed (allowed: $match, "
         "$group, $sort, $skip, $limit, $count, $project)"),
        ('[{"$unwind": "$phases"}]', "_aggregate: stage 1: '$unwind' is not allowed (allowed: "
         "$match, $group, $sort, $skip, $limit, $count, $project)"),
        ('[{"$match": {"$where": "sleep(100)"}}, {"$count": "n"}]',
         "_aggregate: stage 1 ($match): operator '$where' is not allowed (allowed: $and, $or, "
         "$nor, $not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $regex)"),
        ('[{"$match": {"name": {"$function": {}}}}, {"$count": "n"}]',
         "_aggregate: stage 1 ($match): operator '$function' is not allowed (in 'name') "
         "(allowed: $and, $or, $nor, $not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, "
         "$regex)"),
        ('[{"$match": {"_meta.input": 1}}, {"$count": "n"}]',
         "_aggregate: stage 1 ($match): '_meta.input' is not a field of an execution" + KNOWN),
        ('[{"$group": {"_id": "$name", "x": {"$accumulator": {}}}}]',
         "_aggregate: stage 1 ($group): accumulator '$accumulator' is not allowed (allowed: "
         "$sum, $avg, $min, $max, $first, $last, $count)"),
        ('[{"$group": {"_id": "$name", "x": {"$push": "$start"}}}]',
         "_aggregate: stage 1 ($group): accumulator '$push' is not allowed (allowed: $sum, $avg, "
         "$min, $max, $first, $last, $count)"),
        ('[{"$group": {"_id": {"$function": {"body": "x"}}}}]',
         "_aggregate: stage 1 ($group): '$function' in _id is not a plain field name"),
        ('[{"$group": {"_id": "status"}}]', '_aggregate: stage 1 ($group): _id must be null, a '
         'field reference such as "$status", or an object of them such as {"name": "$name", '
         '"status": "$status"}'),
        ('[{"$group": {"count": {"$sum": 1}}}]',
         '_aggregate: stage 1 ($group): takes an object with an _id, such as {"_id": "$status"}'),
        ('[{"$group": {"_id": "$$ROOT"}}]',
         "_aggregate: stage 1 ($group): '$ROOT' is not a field name"),
        ('[{"$group": {"_id": "$_meta.worker"}}]',
         "_aggregate: stage 1 ($group): '_meta.worker' is not a field of an execution" + KNOWN),
        ('[{"$group": {"_id": "$phases.status"}}]', "_aggregate: stage 1 ($group): "
         "'$phases.status' reaches into the phases array, which $group does not (count phase "
         "values with _fieldinfo=phases.status)"),
        ('[{"$group": {"_id": "$data.series.0"}}]', "_aggregate: stage 1 ($group): "
         "'$data.series.0': array positions are not supported in a field reference"),
        ('[{"$group": {"_id": null, "n": {"$sum": "x"}}}]', "_aggregate: stage 1 ($group): "
         "'$sum' of 'n' takes a field reference such as \"$status\", not \"x\""),
        ('[{"$group": {"_id": null, "n": {"$sum": 1.5}}}]',
         "_aggregate: stage 1 ($group): '$sum' of 'n' takes a whole number or a field reference"),
        ('[{"$group": {"_id": null, "n": {"$avg": 1}}}]', "_aggregate: stage 1 ($group): "
         "'$avg' of 'n' takes a field reference such as \"$status\", not 1"),
        ('[{"$group": {"_id": null, "n": {"$count": 1}}}]',
         "_aggregate: stage 1 ($group): '$count' of 'n' takes {}"),
        ('[{"$group": {"_id": null, "a.b": {"$sum": 1}}}]', "_aggregate: stage 1 ($group): "
         "'a.b' is not a plain field name (letters, digits and _)"),
        ('[{"$group": {"_id": null, "n": {"$sum": 1, "$avg": "$x"}}}]',
         "_aggregate: stage 1 ($group): 'n' takes one accumulator, such as {\"$sum\": 1}"),
        ('[{"$group": {"_id": null}}, {"$group": {"_id": null}}]',
         "_aggregate: stage 2 ($group): only one $group per pipeline"),
        ('[{"$count": "n"}, {"$group": {"_id": null}}]',
         "_aggregate: stage 2 ($group): only one $group per pipeline"),
        ('[{"$match": {}}]', "_aggregate: the pipeline needs a $group or a $count stage (the "
         "list call itself lists executions)"),
        ('[{"$project": {"name": 1}}, {"$count": "n"}]',
         "_aggregate: stage 1 ($project): $project applies to the groups: put it after the $group"),
        ('[{"$group": {"_id": "$name"}}, {"$project": {"name": 1}}]',
         "_aggregate: stage 2 ($project): 'name' is not a field (fields here: _id)"),
        ('[{"$group": {"_id": "$name", "n": {"$sum": 1}}}, {"$project": {"n": 0}}]',
         "_aggregate: stage 2 ($project): only _id can be dropped (keep fields with 1, not 'n')"),
        ('[{"$group": {"_id": "$name", "n": {"$sum": 1}}}, {"$project": {"_id": 0}}]',
         "_aggregate: stage 2 ($project): name at least one field to keep"),
        ('[{"$group": {"_id": "$name"}}, {"$project": {"_id": "yes"}}]',
         "_aggregate: stage 2 ($project): value of '_id' must be 1 or 0"),
        ('[{"$sort": {"phases.start": 1}}, {"$count": "n"}]', "_aggregate: stage 1 ($sort): "
         "cannot sort by 'phases.start' (sortable: _id, service, name, environment, trigger, "
         "status, message, reason, start, runAs, end, loaderMessage)"),
        ('[{"$count": "n"}, {"$sort": {"count": 1}}]',
         "_aggregate: stage 2 ($sort): cannot sort by 'count' (fields here: n)"),
        ('[{"$count": "n"}, {"$sort": {"n": 2}}]',
         "_aggregate: stage 2 ($sort): direction of 'n' must be 1 or -1"),
        ('[{"$count": "n"}, {"$sort": {}}]', "_aggregate: stage 2 ($sort): takes an object of "
         'fields and directions, such as {"count": -1}'),
        ('[{"$limit": 0}, {"$count": "n"}]',
         "_aggregate: stage 1 ($limit): takes a whole number from 1 to 1000000000"),
        ('[{"$skip": -1}, {"$count": "n"}]',
         "_aggregate: stage 1 ($skip): takes a whole number from 0 to 1000000000"),
        ('[{"$limit": "5"}, {"$count": "n"}]',
         "_aggregate: stage 1 ($limit): takes a whole number from 1 to 1000000000"),
        ('[{"$count": "$n"}]', '_aggregate: stage 1 ($count): takes the name of its field, such '
         'as "total"'),
        ('[{"$count": "n", "$limit": 1}]', "_aggregate: stage 1: a stage is an object with one "
         'key, such as {"$match": {…}}'),
        ('["$count"]', "_aggregate: stage 1: a stage is an object with one key, such as "
         '{"$match": {…}}'),
    ],
)  # fmt: skip
def test_refusals_name_the_parameter_and_the_fault(raw: str, message: str) -> None:
    assert refusal(raw) == message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("_distinct", "name"), ("_fieldinfo", "status")],
         "_fieldinfo: cannot be combined with _distinct (one of _distinct, _fieldinfo, "
         "_aggregate at a time)"),
        ([("_fieldinfo", "status"), ("_aggregate", '[{"$count": "n"}]')],
         "_aggregate: cannot be combined with _fieldinfo (one of _distinct, _fieldinfo, "
         "_aggregate at a time)"),
        ([("_aggregate", '[{"$count": "n"}]'), ("_distinct", "name")],
         "_distinct: cannot be combined with _aggregate (one of _distinct, _fieldinfo, "
         "_aggregate at a time)"),
        ([("_fieldinfo", "status"), ("_fieldinfo", "name")],
         "_fieldinfo: given twice (one field at a time)"),
        ([("_aggregate", '[{"$count": "n"}]'), ("_aggregate", '[{"$count": "n"}]')],
         "_aggregate: given twice (one pipeline at a time)"),
        ([("_fieldinfo", "status"), ("_project", "name")],
         "_project: cannot be combined with _fieldinfo (its buckets have one shape)"),
        ([("_project", "name"), ("_aggregate", '[{"$count": "n"}]')],
         "_project: cannot be combined with _aggregate (use a $project stage)"),
        ([("_sort", "name"), ("_fieldinfo", "status")],
         "_sort: cannot be combined with _fieldinfo (buckets come by count)"),
        ([("_fieldinfo", "_meta.worker")],
         "_fieldinfo: '_meta.worker' is not a field of an execution" + KNOWN),
        ([("_fieldinfo", "")], "_fieldinfo: '' is not a field name"),
    ],
)  # fmt: skip
def test_combinations(params: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query(params)
    assert str(caught.value) == message


def test_paging_and_sorting_parameters_beside_them() -> None:
    query = parse_query([("_fieldinfo", " phases.status "), ("_limit", "1"), ("_skip", "3")])
    assert (query.fieldinfo, query.limit, query.skip) == ("phases.status", 1, 3)  # not applied
    sorted_input = parse_query(
        [("_sort", "-name"), ("_aggregate", '[{"$limit": 1}, {"$count": "n"}]'), ("_limit", "1")]
    )
    assert sorted_input.aggregate is not None
    assert sorted_input.aggregate.before[0] == Sort((("name", -1), ("_id", -1)))


# --- buckets and the order of values ----------------------------------------------------------


def test_field_buckets() -> None:
    counted = [
        (["failed", "success", "failed"], 1),  # one execution, two values: each counts once
        (["success"], 1),
        ([], 1),
        (None, 4),  # left out
        ("running", 2),
        ([7, 7.0, True, {"k": 1}], 1),
    ]
    assert field_buckets("phases.status", counted) == [
        {"_id": "running", "count": 2, "filter": {"phases.status": "running"}},
        {"_id": "success", "count": 2, "filter": {"phases.status": "success"}},
        {"_id": 7, "count": 1, "filter": {"phases.status": 7}},
        {"_id": "failed", "count": 1, "filter": {"phases.status": "failed"}},
        {"_id": {"k": 1}, "count": 1, "filter": {"phases.status": {"k": 1}}},
        {"_id": True, "count": 1, "filter": {"phases.status": True}},
    ]


def test_field_buckets_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import procexec.engine.query.documents

    monkeypatch.setattr(procexec.engine.query.documents, "MAX_DISTINCT", 3)
    assert len(field_buckets("x", [("a", 1), ("b", 1), ("c", 1)])) == 3
    with pytest.raises(BadRequest, match=r"^_fieldinfo: more than 3 distinct values of 'x'; "):
        field_buckets("x", [("a", 1), ("b", 1), (["c", "d"], 1)])


def test_values_are_ordered_as_mongodb_compares_them() -> None:
    values = [True, [1], [0, 5], [], {"b": 1}, {"a": "x"}, {"a": 2}, {"a": 2, "b": 0}, "b", "a",
              2.5, 2, -1, None, False, {}]  # fmt: skip
    assert sorted(values, key=distinct_key) == [
        None, -1, 2, 2.5, "a", "b",
        {}, {"a": 2}, {"a": 2, "b": 0}, {"b": 1}, {"a": "x"},  # a field's type, name, value
        [], [0, 5], [1], False, True,
    ]  # fmt: skip
