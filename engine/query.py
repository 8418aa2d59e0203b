"""The list call's query language, parsed into one backend-neutral `Query`.

Each store compiles a `Query` itself (`engine.store.sqlite`, `engine.store.mongo`), so the
same request gives the same rows on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from engine.constants import DEFAULT_ENVIRONMENT, DEFAULT_LIMIT, MAX_LIMIT
from engine.errors import BadRequest
from engine.timeutil import iso_ms, parse_iso

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "regex"]


@dataclass(frozen=True)
class Condition:
    """`field <op> value`; on a path through `phases`, true when any phase matches."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Condition | And | Or | Not


@dataclass(frozen=True)
class Query:
    """What to list: a filter tree, an order, a page and a projection, in one environment."""

    environment: str = DEFAULT_ENVIRONMENT
    where: Node | None = None
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    project: tuple[str, ...] | None = None
    extra: dict[str, str] = field(default_factory=dict)


#: fields that hold timestamps; their filter values are dates or datetimes
DATE_FIELDS = frozenset({"start", "end", "phases.start", "phases.end"})
#: the only array of sub-documents in an execution document
ARRAY_FIELDS = frozenset({"phases"})

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_:#-]+)*\Z")
_FUNCTION = re.compile(r"^([A-Za-z]+)\((.*)\)$", re.DOTALL)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FUNCTIONS = ("range", "gt", "gte", "lt", "lte", "in", "ne", "regex")
_RESERVED = ("_limit", "_skip", "_sort", "_project")
#: fields a list can be sorted by: the document's top-level scalar fields
SORT_FIELDS = (
    "_id",
    "service",
    "name",
    "environment",
    "trigger",
    "status",
    "message",
    "reason",
    "start",
    "end",
    "runAs",
    "loaderMessage",
)


def check_field(name: str, param: str) -> str:
    if not _FIELD.match(name):
        raise BadRequest(f"{param}: '{name}' is not a field name")
    return name


def _split_args(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _date_bound(field_name: str, text: str, *, upper: bool) -> str:
    """A date filter value as a stored timestamp; a bare date is its first or last instant."""
    try:
        if _BARE_DATE.match(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day)
            if upper:
                moment += timedelta(days=1) - timedelta(milliseconds=1)
            return iso_ms(parse_iso(moment.isoformat()))
        return iso_ms(parse_iso(text))
    except (ValueError, OverflowError):
        raise BadRequest(f"{field_name}: '{text}' is not a date or an ISO 8601 datetime") from None


def _scalar(text: str) -> str | None:
    return None if text == "null" else text


def _date_equals(field_name: str, raw: str) -> Node:
    """`field = raw` on a date field: a bare date is its whole day, `null` is a missing value."""
    if raw == "null":
        return Condition(field_name, "eq", None)
    lower = _date_bound(field_name, raw, upper=False)
    if _BARE_DATE.match(raw):
        upper = _date_bound(field_name, raw, upper=True)
        return And((Condition(field_name, "gte", lower), Condition(field_name, "lte", upper)))
    return Condition(field_name, "eq", lower)


def parse_condition(field_name: str, raw: str) -> Node:
    """One `field=value` pair, value functions included."""
    check_field(field_name, field_name)
    is_date = field_name in DATE_FIELDS
    match = _FUNCTION.match(raw)
    if not match:
        if raw.startswith("{") or raw.startswith("$"):
            raise BadRequest(f"{field_name}: operators are not allowed in a value ('{raw}')")
        if is_date:
            return _date_equals(field_name, raw)
        return Condition(field_name, "eq", _scalar(raw))
    function, body = match.group(1), match.group(2)
    if function not in _FUNCTIONS:
        raise BadRequest(
            f"{field_name}: unknown function '{function}' (known: {', '.join(_FUNCTIONS)})"
        )
    if function == "regex":
        try:
            re.compile(body)
        except re.error as exc:
            raise BadRequest(f"{field_name}: bad regular expression '{body}': {exc}") from None
        return Condition(field_name, "regex", body)
    args = _split_args(body)
    if function == "in":
        if not args:
            raise BadRequest(f"{field_name}: in() needs at least one value")
        if is_date:
            # Each value as `field=value` would take it: a bare date is its whole day.
            return Or(tuple(_date_equals(field_name, a) for a in args))
        return Condition(field_name, "in", tuple(_scalar(a) for a in args))
    if function == "range":
        if len(args) != 2:
            raise BadRequest(f"{field_name}: range() takes two values, got {len(args)}")
        low, high = args
        if is_date:
            low = _date_bound(field_name, low, upper=False)
            high = _date_bound(field_name, high, upper=True)
        return And((Condition(field_name, "gte", low), Condition(field_name, "lte", high)))
    if len(args) != 1:
        raise BadRequest(f"{field_name}: {function}() takes one value, got {len(args)}")
    value: str | None = args[0]
    if function == "ne":
        if is_date and args[0] != "null":
            equals = _date_equals(field_name, args[0])
            if isinstance(equals, Condition):
                return Condition(field_name, "ne", equals.value)
            return Not(equals)  # a bare date: not on that day
        return Condition(field_name, "ne", _scalar(args[0]))
    if is_date:
        # A bare date is a whole day: gt(d) is after it, lt(d) before it.
        value = _date_bound(field_name, args[0], upper=function in ("gt", "lte"))
    return Condition(field_name, function, value)  # type: ignore[arg-type]


def _parse_int(param: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{param}: '{raw}' is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{param}: {value} is out of range ({low} to {high})")
    return value


def _parse_sort(raw: str) -> tuple[tuple[str, int], ...]:
    raw = raw.strip()
    keys: list[tuple[str, int]] = []
    if raw.startswith("{"):
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"_sort: malformed JSON: {exc.msg}") from None
        if not isinstance(spec, dict):
            raise BadRequest('_sort: JSON form must be an object such as {"start":-1}')
        for name, direction in spec.items():
            if isinstance(direction, bool) or direction not in (1, -1):
                raise BadRequest(f"_sort: direction of '{name}' must be 1 or -1")
            keys.append((check_field(name, "_sort"), int(direction)))
    else:
        for part in _split_args(raw):
            direction = -1 if part.startswith("-") else 1
            name = part.lstrip("+-")
            keys.append((check_field(name, "_sort"), direction))
    if not keys:
        raise BadRequest("_sort: no sort key given")
    seen: set[str] = set()
    for name, _ in keys:
        if name not in SORT_FIELDS:
            raise BadRequest(f"_sort: cannot sort by '{name}' (sortable: {', '.join(SORT_FIELDS)})")
        if name in seen:
            raise BadRequest(f"_sort: '{name}' is given twice")
        seen.add(name)
    return tuple(keys)


def _parse_project(raw: str) -> tuple[str, ...]:
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"_project: malformed JSON: {exc.msg}") from None
        if not isinstance(spec, dict):
            raise BadRequest('_project: JSON form must be an object such as {"name":1}')
        names = [name for name, keep in spec.items() if keep]
    else:
        names = _split_args(raw)
    fields = [check_field(name, "_project") for name in names]
    # A path inside another kept path adds nothing, and MongoDB refuses the pair.
    return tuple(
        dict.fromkeys(
            name
            for name in fields
            if not any(name.startswith(other + ".") for other in fields if other != name)
        )
    )


def parse_query(
    params: Iterable[tuple[str, str]],
    environment: str = DEFAULT_ENVIRONMENT,
    *,
    ignore: Iterable[str] = (),
) -> Query:
    """Turn the list call's query parameters into a `Query`; a bad one raises `BadRequest`."""
    conditions: list[Node] = []
    limit, skip = DEFAULT_LIMIT, 0
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    project = None
    skipped = set(ignore)
    for name, raw in params:
        if name in skipped:
            continue
        if name == "_limit":
            limit = MAX_LIMIT if raw.strip() == "-1" else _parse_int(name, raw, 0, MAX_LIMIT)
        elif name == "_skip":
            skip = _parse_int(name, raw, 0, 10**9)
        elif name == "_sort":
            sort = _parse_sort(raw)
        elif name == "_project":
            project = _parse_project(raw)
        elif name.startswith("_") and name != "_id":
            raise BadRequest(f"{name}: unknown query parameter")
        else:
            conditions.append(parse_condition(name, raw))
    where: Node | None = None
    if len(conditions) == 1:
        where = conditions[0]
    elif conditions:
        where = And(tuple(conditions))
    return Query(
        environment=environment, where=where, sort=sort, limit=limit, skip=skip, project=project
    )
