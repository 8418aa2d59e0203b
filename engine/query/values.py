"""Value functions: the value of a `field=value` parameter (`range(…)`, `gt(…)`, `gte(…)`,
`lt(…)`, `lte(…)`, `in(…)`, `ne(…)`, `regex(…)`, a plain value, `null`) as a condition on the
field. On a date field (`DATE_FIELDS`) a bare date stands for its whole day. The comparisons of
a `_filter` expression take the same values. On a field of a closed set (`CLOSED_FIELDS`:
`status`, `trigger`, `phases.status`) every value a filter compares with must be one of the set
(`check_closed_values`), whatever form the filter takes.
"""

from __future__ import annotations

import re
from datetime import date

from procexec.engine.errors import BadRequest, excerpt, label
from procexec.engine.limits import MAX_IN_VALUES
from procexec.engine.query.fields import check_document_field, suggestion
from procexec.engine.query.regex import check_regex
from procexec.engine.query.tree import And, Condition, Node, Not, Or
from procexec.engine.schema import CLOSED_FIELDS, DATE_FIELDS
from procexec.engine.timeutil import iso_ms, parse_iso

#: a value function applied to its arguments: `name(arguments)`
FUNCTION_CALL = re.compile(r"^([A-Za-z]+)\((.*)\)$", re.DOTALL)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: the start of a value function's call: `in(`
_FUNCTION_START = re.compile(r"^([A-Za-z]+)\(")
#: what no plain value starts with: a doubled or misplaced operator (`status==failed`)
_OPERATOR_CHARS = ("=", "<", ">")
_FUNCTIONS = ("range", "gt", "gte", "lt", "lte", "in", "ne", "regex")


def closed_set(field_name: str) -> tuple[str, ...] | None:
    """The values `field_name` may hold when they form a closed set (`phases.0.status` is
    `phases.status`), else None."""
    return CLOSED_FIELDS.get(".".join(p for p in field_name.split(".") if not p.isdigit()))


def check_closed_values(node: Node, param: str) -> Node:
    """`node`, once each value it compares a field of a closed set with is one of the set, or
    null (a missing value); else a `BadRequest` naming `param`, the value and the set, with the
    nearest value suggested (`FAILED`: did you mean 'failed'?). Values match as the platform
    writes them: a typo would match nothing, which reads as "no such executions". A pattern
    (`regex`) and a presence test (`$exists`) compare with no value of the field.

    One check of the filter tree, whatever read it: a parameter, `_filter` in either form, the
    `$match` of `_aggregate`; so both stores are given only values of the set."""
    if isinstance(node, Not):
        check_closed_values(node.item, param)
    elif isinstance(node, And | Or):
        for item in node.items:
            check_closed_values(item, param)
    elif node.op not in ("regex", "exists") and (allowed := closed_set(node.field)):
        for value in node.value if node.op == "in" else (node.value,):
            if value is None or value in allowed:
                continue
            shown = f"'{excerpt(value)}'" if isinstance(value, str) else excerpt(value)
            near = suggestion(value, allowed) if isinstance(value, str) else ""
            raise BadRequest(
                f"{label(param)}: {shown} is not a value of {excerpt(node.field)}{near} "
                f"(allowed: {', '.join(allowed)})"
            )
    return node


def check_in_values(param: str, count: int, function: str = "in()") -> None:
    """A `BadRequest` naming `param` when an `in()` (`$in`, `$nin`) lists more than
    `MAX_IN_VALUES` values."""
    if count > MAX_IN_VALUES:
        raise BadRequest(
            f"{label(param)}: {function} lists {count} values, at most {MAX_IN_VALUES} allowed"
        )


def split_args(text: str) -> list[str]:
    """A comma-separated list, each item stripped; none in a blank text."""
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _date_bound(field_name: str, text: str, *, upper: bool) -> str:
    """A date filter value as a stored timestamp; a bare date is its first or last instant."""
    try:
        if _BARE_DATE.match(text):
            date.fromisoformat(text)  # a real day
            return text + ("T23:59:59.999Z" if upper else "T00:00:00.000Z")
        return iso_ms(parse_iso(text))
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{label(field_name)}: '{excerpt(text)}' is not a date or an ISO 8601 datetime"
        ) from None


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


def _refuse_operators(field_name: str, raw: str) -> None:
    if raw.startswith("{") or raw.startswith("$"):
        raise BadRequest(
            f"{label(field_name)}: operators are not allowed in a value ('{excerpt(raw)}')"
        )


def equals_condition(field_name: str, raw: str) -> Node:
    """`field = raw`, `raw` taken as a plain value (a value function is not applied)."""
    _refuse_operators(field_name, raw)
    if field_name in DATE_FIELDS:
        return _date_equals(field_name, raw)
    return Condition(field_name, "eq", _scalar(raw))


def apply_function(field_name: str, function: str, args: list[str], body: str) -> Node:
    """A value function applied to its (already split) arguments."""
    is_date = field_name in DATE_FIELDS
    if function == "regex":
        return Condition(field_name, "regex", check_regex(field_name, body))
    if function == "in":
        if not args:
            raise BadRequest(f"{label(field_name)}: in() needs at least one value")
        check_in_values(field_name, len(args))
        for arg in args:
            _refuse_operators(field_name, arg)
        if is_date:
            # Each value as `field=value` would take it: a bare date is its whole day.
            return Or(tuple(_date_equals(field_name, a) for a in args))
        return Condition(field_name, "in", tuple(_scalar(a) for a in args))
    if function == "range":
        if len(args) != 2:
            raise BadRequest(f"{label(field_name)}: range() takes two values, got {len(args)}")
        low, high = args
        for arg in args:
            _refuse_operators(field_name, arg)
        if is_date:
            low = _date_bound(field_name, low, upper=False)
            high = _date_bound(field_name, high, upper=True)
        return And((Condition(field_name, "gte", low), Condition(field_name, "lte", high)))
    if len(args) != 1:
        raise BadRequest(f"{label(field_name)}: {function}() takes one value, got {len(args)}")
    _refuse_operators(field_name, args[0])
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


def _check_plain(field_name: str, raw: str) -> None:
    """A plain value that a typo made: a value function never closed (`in(ECB_FX,DEMO`), or
    an operator doubled (`status==failed` reads the value `=failed`). Such a value would match
    nothing, which reads as "no such executions"; a `_filter` quotes a value that must start
    so (`name="=x"`)."""
    opening = _FUNCTION_START.match(raw)
    if opening:
        raise BadRequest(
            f"{label(field_name)}: malformed call of {opening.group(1)}(): '(' at position "
            f"{opening.end() - 1} is never closed by a ')' at the end of '{excerpt(raw)}'"
        )
    if raw[:1] in _OPERATOR_CHARS:
        raise BadRequest(
            f"{label(field_name)}: the value '{excerpt(raw)}' starts with '{raw[0]}': "
            f"'{excerpt(field_name)}={excerpt(raw)}' is not an operator (write "
            f"{excerpt(field_name)}=value, or {excerpt(field_name)}=gt(value) and the like; "
            "quote such a value in _filter)"
        )


def parse_condition(field_name: str, raw: str) -> Node:
    """One `field=value` pair, value functions included."""
    check_document_field(field_name, field_name)
    match = FUNCTION_CALL.match(raw)
    if not match:
        _check_plain(field_name, raw)
        return equals_condition(field_name, raw)
    function, body = match.group(1), match.group(2)
    if function not in _FUNCTIONS:
        raise BadRequest(
            f"{label(field_name)}: unknown function '{excerpt(function)}' (known: "
            f"{', '.join(_FUNCTIONS)})"
        )
    if function == "in":  # counted before the values are split and checked
        check_in_values(field_name, body.count(",") + 1)
    return apply_function(field_name, function, split_args(body), body)
