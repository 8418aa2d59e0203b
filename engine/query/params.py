"""The list call's URL parameters read into one `Query`, what to list: `field=value`
(`engine.query.values`), `_filter` (`engine.query.expression` or `engine.query.json_filter`),
`_search` (`engine.search`), `_sort`, `_project`, `_limit`, `_skip`, and the parameters that
answer with something else than documents, one at a time: `_distinct`, `_fieldinfo` and
`_aggregate` (`engine.query.pipeline`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from procexec.engine import deadline
from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.errors import BadRequest, excerpt, label
from procexec.engine.limits import DEFAULT_LIMIT, MAX_LIMIT, MAX_PROJECT_FIELDS, MAX_SORT_KEYS
from procexec.engine.query.expression import ExpressionParser
from procexec.engine.query.fields import (
    KNOWN_FIELDS_TEXT,
    SORT_FIELDS,
    check_document_field,
    check_field,
    check_sortable,
    sort_keys,
    suggestion,
)
from procexec.engine.query.json_filter import json_filter
from procexec.engine.query.json_input import load_json, load_relaxed_json, lone_surrogate
from procexec.engine.query.pipeline import Match, Pipeline, parse_pipeline
from procexec.engine.query.tree import MAX_QUERY_NODES, And, Node, size
from procexec.engine.query.values import check_closed_values, parse_condition, split_args
from procexec.engine.schema import DOCUMENT_FIELDS
from procexec.engine.search import AllOf, SearchNode, parse_search


@dataclass(frozen=True)
class Query:
    """What to list: a filter tree, a search, an order, a page and a projection, in one environment.

    `project` keeps `_id` and the named fields; `exclude` drops the named fields (never `_id`);
    `distinct` asks for the distinct values of one field instead of documents, `fieldinfo` for
    its values and how many executions hold each, `aggregate` for a pipeline's results.
    """

    environment: str = DEFAULT_ENVIRONMENT
    where: Node | None = None
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    project: tuple[str, ...] | None = None
    search: SearchNode | None = None
    exclude: tuple[str, ...] | None = None
    distinct: str | None = None
    fieldinfo: str | None = None
    aggregate: Pipeline | None = None

    @functools.cached_property
    def compiled(self) -> dict[Any, Any]:
        """Room for a store's compiled forms of this query (SQL clauses), kept with it: a query
        is immutable, and the API hands out one object per distinct query string."""
        return {}


#: the parameters that answer with something else than documents: one at a time
ANSWERS = ("_distinct", "_fieldinfo", "_aggregate")
#: the list call's options: every other parameter is a filter on a field
OPTIONS = ("_filter", "_search", "_sort", "_project", "_limit", "_skip", *ANSWERS)


#: the options of a call that reads one execution (`v1/{id}`): those of the list call that
#: apply to one document, and `_params` (read by `engine.shown_parameters.asked`)
DOCUMENT_OPTIONS = ("_project", "_params")


def _check_nul(name: str, raw: str) -> None:
    """Neither a parameter's name nor its value holds a NUL, which the stores cannot hold alike
    (SQLite's functions cut a text there), nor a lone surrogate, which no store can encode."""
    for text, what in ((name, "name"), (raw, "value")):
        if "\x00" in text:
            raise BadRequest(
                f"{label(name)}: a NUL character (\\x00) at position {text.index(chr(0))} "
                f"of the {what} is not allowed"
            )
        refused = lone_surrogate(label(name), text)
        if refused is not None:
            raise refused


def _check_parameter(name: str, raw: str) -> None:
    """A parameter's name is an option or a field of an execution (else it is a typo, which a
    filter would answer with an empty list); neither holds a NUL (`_check_nul`)."""
    _check_nul(name, raw)
    if name.startswith("_") and name != "_id" and name not in OPTIONS:
        raise BadRequest(
            f"{label(name)}: unknown query parameter{suggestion(name, OPTIONS)} "
            f"(options: {', '.join(OPTIONS)}; other parameters are filters on fields)"
        )
    if name.startswith("_"):
        return
    top = check_field(name, name).split(".")[0]
    if top not in DOCUMENT_FIELDS:
        raise BadRequest(
            f"{label(name)}: unknown query parameter, and not a field of an execution"
            f"{suggestion(top, DOCUMENT_FIELDS)} (options: {', '.join(OPTIONS)}; "
            f"{KNOWN_FIELDS_TEXT})"
        )


def parse_filter(raw: str, param: str = "_filter") -> Node:
    """A `_filter` value: a JSON filter when it starts with `{`, else a boolean expression.

    The JSON may be the platform's relaxed form (`engine.relaxed_json`): bare keys and
    `/regex/flags` literals, read as `{"$regex": …, "$options": …}`."""
    if raw.lstrip().startswith(("{", "[")):
        return json_filter(load_relaxed_json(param, raw), param)
    return ExpressionParser(raw, param).parse()


def _parse_int(param: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{param}: '{excerpt(raw)}' is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{param}: {value} is out of range ({low} to {high})")
    return value


def _too_many(param: str, count: int, limit: int, what: str) -> None:
    """A `BadRequest` naming `param` and the limit when `count` passes it."""
    if count > limit:
        raise BadRequest(f"{param}: {count} {what}, at most {limit} allowed")


def _parse_sort(raw: str) -> tuple[tuple[str, int], ...]:
    raw = raw.strip()
    keys: list[tuple[str, int]] = []
    if raw.startswith("{"):
        spec = load_json("_sort", raw)
        if not isinstance(spec, dict):
            raise BadRequest('_sort: JSON form must be an object such as {"start":-1}')
        _too_many("_sort", len(spec), MAX_SORT_KEYS, "keys")
        keys = sort_keys(spec, "_sort")
    else:
        _too_many("_sort", raw.count(",") + 1, MAX_SORT_KEYS, "keys")
        for part in split_args(raw):
            direction = -1 if part.startswith("-") else 1
            name = part[1:] if part[:1] in "+-" else part
            keys.append((check_field(name, "_sort"), direction))
    if not keys:
        raise BadRequest("_sort: no sort key given")
    return tuple(check_sortable(keys, "_sort", SORT_FIELDS))


def _outermost(fields: list[str]) -> tuple[str, ...]:
    """The paths, once each, without those inside another (MongoDB refuses such pairs): each
    path's prefixes looked up among them (a path has at most `MAX_PATH_PARTS` parts), in time
    linear in their number."""
    given = dict.fromkeys(fields)
    return tuple(
        name
        for name in given
        if not any(
            ".".join(name.split(".")[:end]) in given for end in range(1, name.count(".") + 1)
        )
    )


def _parse_project(raw: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """`(kept, dropped)`: an inclusion projection, or an exclusion one (`-phases`, `{"data":0}`)."""
    raw = raw.strip()
    kept: list[str] = []
    dropped: list[str] = []
    if raw.startswith("{"):
        spec = load_json("_project", raw)
        if not isinstance(spec, dict):
            raise BadRequest('_project: JSON form must be an object such as {"name":1}')
        _too_many("_project", len(spec), MAX_PROJECT_FIELDS, "fields")
        for name, keep in spec.items():
            if keep not in (0, 1) or (isinstance(keep, float)):
                raise BadRequest(f"_project: value of '{excerpt(name)}' must be 1 or 0")
            (kept if keep else dropped).append(name)
        if kept:
            dropped = []  # an inclusion keeps what it names: a 0 beside it changes nothing
    else:
        _too_many("_project", raw.count(",") + 1, MAX_PROJECT_FIELDS, "fields")
        for part in split_args(raw):
            (dropped if part.startswith("-") else kept).append(part.removeprefix("-"))
        if kept and dropped:
            raise BadRequest("_project: list either fields to keep or fields to drop (-name)")
    for name in (*kept, *dropped):
        check_document_field(name, "_project")
    if dropped:
        dropped = [name for name in dropped if name != "_id"]  # _id always comes back
        return None, _outermost(dropped) if dropped else None
    return _outermost(kept), None


#: a projection: the fields kept (`_id` with them), or else the fields dropped
Projection = tuple[tuple[str, ...] | None, tuple[str, ...] | None]


def parse_document_params(params: Iterable[tuple[str, str]]) -> Projection:
    """The parameters of a call that reads one execution (`v1/{id}`, `v1/private/{id}`): the
    list call's options that apply to one document (`DOCUMENT_OPTIONS`), read as the list call
    reads them; any other parameter is refused as the list call refuses an unknown one, a
    filter included (one execution is read by its id, whatever its fields hold)."""
    project: Projection = (None, None)
    for name, raw in params:
        _check_nul(name, raw)
        if name not in DOCUMENT_OPTIONS:
            raise BadRequest(
                f"{label(name)}: unknown query parameter{suggestion(name, DOCUMENT_OPTIONS)} "
                f"(options: {', '.join(DOCUMENT_OPTIONS)}; one execution takes no filters)"
            )
        if name == "_project":
            project = _parse_project(raw)
    return project


def _count_nodes(param: str, before: int, node: Node) -> int:
    """The nodes of the query's filters once `node` joins them; a `BadRequest` naming `param`
    past `MAX_QUERY_NODES`."""
    total = before + size(node)
    if total > MAX_QUERY_NODES:
        raise BadRequest(
            f"{param}: the query's filters pass {MAX_QUERY_NODES} nodes (each condition, and, "
            f"or, not, and each value of an in() counts one; at most {MAX_QUERY_NODES} allowed)"
        )
    return total


def parse_query(
    params: Iterable[tuple[str, str]],
    environment: str = DEFAULT_ENVIRONMENT,
    *,
    ignore: Iterable[str] = (),
) -> Query:
    """Turn the list call's query parameters into a `Query`; a bad one raises `BadRequest`."""
    conditions: list[Node] = []
    searches: list[SearchNode] = []
    limit, skip = DEFAULT_LIMIT, 0
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    project: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    distinct: str | None = None
    fieldinfo: str | None = None
    pipeline: Pipeline | None = None
    given: set[str] = set()  # the parameters met
    answer: str | None = None  # the first of `ANSWERS` met
    nodes = 0  # the filters' nodes so far (`MAX_QUERY_NODES`)
    skipped = set(ignore)
    for name, raw in params:
        deadline.check()
        if name in skipped:
            continue
        given.add(name)
        if name in ANSWERS and answer is not None:
            if answer == name:
                what = "pipeline" if name == "_aggregate" else "field"
                raise BadRequest(f"{name}: given twice (one {what} at a time)")
            raise BadRequest(
                f"{name}: cannot be combined with {answer} (one of {', '.join(ANSWERS)} at a time)"
            )
        if name in ANSWERS:
            answer = name
        _check_parameter(name, raw)
        if name == "_limit":
            limit = MAX_LIMIT if raw.strip() == "-1" else _parse_int(name, raw, 0, MAX_LIMIT)
        elif name == "_skip":
            skip = _parse_int(name, raw, 0, 10**9)
        elif name == "_sort":
            sort = _parse_sort(raw)
        elif name == "_project":
            project, exclude = _parse_project(raw)
        elif name == "_filter":
            conditions.append(parse_filter(raw))
            nodes = _count_nodes(name, nodes, conditions[-1])
        elif name == "_search":
            found = parse_search(raw)
            if found is not None:
                searches.append(found)
        elif name == "_distinct":
            distinct = check_document_field(raw.strip(), name)
        elif name == "_fieldinfo":
            fieldinfo = check_document_field(raw.strip(), name)
        elif name == "_aggregate":
            pipeline = parse_pipeline(raw)
            for stage in pipeline.stages():
                if isinstance(stage, Match):
                    nodes = _count_nodes(name, nodes, stage.where)
        else:
            conditions.append(check_closed_values(parse_condition(name, raw), name))
            nodes = _count_nodes(name, nodes, conditions[-1])
    where: Node | None = None
    if len(conditions) == 1:
        where = conditions[0]
    elif conditions:
        where = And(tuple(conditions))
    search: SearchNode | None = None
    if searches:
        search = searches[0] if len(searches) == 1 else AllOf(tuple(searches))
    if pipeline is not None or fieldinfo is not None:
        answer, why = (
            ("_aggregate", "use a $project stage")
            if pipeline is not None
            else ("_fieldinfo", "its buckets have one shape")
        )
        if "_project" in given:
            raise BadRequest(f"_project: cannot be combined with {answer} ({why})")
        if "_sort" in given and fieldinfo is not None:
            raise BadRequest("_sort: cannot be combined with _fieldinfo (buckets come by count)")
    return Query(
        environment=environment,
        where=where,
        sort=sort,
        limit=limit,
        skip=skip,
        project=project,
        search=search,
        exclude=exclude,
        distinct=distinct,
        fieldinfo=fieldinfo,
        aggregate=None if pipeline is None else pipeline.with_input_order(sort),
    )
