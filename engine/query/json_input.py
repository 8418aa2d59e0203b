"""Reading a parameter's JSON: strictly (`load_json`: `_sort`, `_project`, `_aggregate`), or
also in the platform's relaxed form (`load_relaxed_json`, for a JSON `_filter`:
`engine.relaxed_json`). Text that is not JSON is a `BadRequest` naming the parameter;
`json_type` names a value's JSON type in such messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from procexec.engine import relaxed_json
from procexec.engine.errors import BadRequest


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strings_in(value: Any) -> Iterator[str]:
    """Every string of a JSON value, keys included, walked without recursion (a parser accepts
    nesting deeper than a recursive walk could go)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


#: a UTF-16 surrogate alone (`"\\ud800"` in JSON): no text in UTF-8, which both stores hold
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(param: str, text: str) -> BadRequest | None:
    """The `BadRequest` naming `param` when `text` holds a lone surrogate, else None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return BadRequest(
        f"{param}: a lone surrogate (\\u{ord(found.group()):04x}) is not text: a string "
        "must be valid Unicode (a pair of surrogates encodes one character)"
    )


def refuse_nul(param: str, value: Any) -> Any:
    """`value`, or a `BadRequest` when one of its strings (keys included) holds a NUL, escaped
    as `\\u0000` (the stores do not hold it alike), or a lone surrogate (`\\ud800`, which
    no store can encode)."""
    for item in strings_in(value):
        if "\x00" in item:
            raise BadRequest(f"{param}: a NUL character (\\u0000) in a string is not allowed")
        refused = lone_surrogate(param, item)
        if refused is not None:
            raise refused
    return value


def load_json(param: str, raw: str) -> Any:
    try:
        return refuse_nul(param, json.loads(raw, parse_constant=_refuse_constant))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"{param}: malformed JSON: nested too deeply") from None


def load_relaxed_json(param: str, raw: str) -> Any:
    """A JSON filter, strict or in the platform's relaxed form (`{_id:/AB/i}`, bare keys)."""
    try:
        return refuse_nul(param, json.loads(raw, parse_constant=_refuse_constant))
    except json.JSONDecodeError:
        pass  # not strict JSON: the relaxed form, or malformed (said by the relaxed reader)
    except (ValueError, RecursionError):
        return load_json(param, raw)  # NaN, Infinity, or too deep: refused as JSON is
    try:
        return refuse_nul(param, relaxed_json.loads(raw))
    except relaxed_json.RelaxedJsonError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc.msg} at position {exc.pos}") from None
