"""Field paths as the query language names them: which names are fields (`check_field`, and
`check_document_field` for the fields of an execution, as its one schema `engine.schema` lists
them), and the keys a list is sorted by (`SORT_FIELDS`, `sort_keys`, `check_sortable`). The
parameters, the filters and the `_aggregate` pipeline all check their fields here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from procexec.engine.errors import BadRequest, excerpt, label
from procexec.engine.schema import (
    DOCUMENT_FIELDS,
    FREE_FIELD,
    LOG_FIELD,
    PHASE_FIELDS,
    PHASES_FIELD,
    SCALAR_FIELDS,
)

#: a field path has at most this many parts
MAX_PATH_PARTS = 8
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_:#-]+)*\Z")

#: fields a list can be sorted by: the document's top-level scalar fields
SORT_FIELDS = SCALAR_FIELDS
#: the fields an error lists, as a user writes them
KNOWN_FIELDS_TEXT = (
    f"fields: {', '.join(DOCUMENT_FIELDS)}; {PHASES_FIELD}.<{'|'.join(PHASE_FIELDS)}>; "
    f"any path under {FREE_FIELD}"
)
_DIRECTIONS = {"asc": 1, "ascending": 1, "desc": -1, "descending": -1}


def check_field(name: str, param: str) -> str:
    """A field path as the user gave it, or a `BadRequest` naming `param`."""
    if not _FIELD.match(name):
        raise BadRequest(f"{label(param)}: '{excerpt(name)}' is not a field name")
    if name.count(".") >= MAX_PATH_PARTS:
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}' is too deep (a path has at most "
            f"{MAX_PATH_PARTS} parts)"
        )
    return name


def suggestion(name: str, known: Sequence[str]) -> str:
    """` (did you mean 'status'?)` when `name` is close to one of `known`, else nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if not close:
        close = [other for other in known if other.lower() == name.lower()]
    return f" (did you mean '{excerpt(close[0])}'?)" if close else ""


def check_document_field(name: str, param: str) -> str:
    """A field of the execution document, as `engine.schema` lists them: a top-level field,
    `phases` and the fields of its elements (an array position may stand between: `phases.0`,
    `phases.0.log.2`), or any path under `data`. Anything else, hidden bookkeeping (`_meta`…)
    included, is a `BadRequest` that lists the fields."""
    check_field(name, param)
    top, *rest = name.split(".")
    if top not in DOCUMENT_FIELDS:
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}' is not a field of an execution"
            f"{suggestion(top, DOCUMENT_FIELDS)} ({KNOWN_FIELDS_TEXT})"
        )
    if not rest or top == FREE_FIELD:
        return name
    if top != PHASES_FIELD:
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}': the field '{top}' holds one value, it has no "
            f"fields "
            f"(paths go into {PHASES_FIELD} and {FREE_FIELD})"
        )
    if rest[0].isdigit():  # a position in the array of phases
        rest = rest[1:]
    if not rest:
        return name
    field, *deeper = rest
    if field not in PHASE_FIELDS:
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}' is not a field of a phase"
            f"{suggestion(field, PHASE_FIELDS)} (phase fields: {', '.join(PHASE_FIELDS)})"
        )
    if deeper and not (field == LOG_FIELD and len(deeper) == 1 and deeper[0].isdigit()):
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}': the phase field '{field}' holds "
            f"{'lines of text' if field == LOG_FIELD else 'one value'}, it has no fields"
        )
    return name


def check_group_field(name: str, param: str, fields: Sequence[str]) -> str:
    """A field of the groups an `_aggregate` pipeline made (`fields`: `_id` and its
    accumulators, or a `$count`'s name); a path may go into one (`_id.name`)."""
    check_field(name, param)
    top = name.split(".")[0]
    if top not in fields:
        raise BadRequest(
            f"{label(param)}: '{excerpt(name)}' is not a field here"
            f"{suggestion(top, fields)} (fields here: {', '.join(map(excerpt, fields))})"
        )
    return name


def sort_keys(spec: dict[str, Any], param: str) -> list[tuple[str, int]]:
    """The keys of a JSON sort object (`{"start": -1}`, `{"name": "asc"}`)."""
    keys: list[tuple[str, int]] = []
    for name, direction in spec.items():
        if isinstance(direction, str) and direction.lower() in _DIRECTIONS:
            direction = _DIRECTIONS[direction.lower()]
        if isinstance(direction, bool) or direction not in (1, -1):
            raise BadRequest(f"{label(param)}: direction of '{excerpt(name)}' must be 1 or -1")
        keys.append((check_field(name, param), int(direction)))
    return keys


def check_sortable(
    keys: list[tuple[str, int]], param: str, sortable: Sequence[str]
) -> list[tuple[str, int]]:
    """The keys, each a field of `sortable` given once."""
    seen: set[str] = set()
    for name, _ in keys:
        if name not in sortable:
            raise BadRequest(
                f"{label(param)}: cannot sort by '{excerpt(name)}'{suggestion(name, sortable)} "
                f"(sortable: {', '.join(sortable)})"
            )
        if name in seen:
            raise BadRequest(f"{label(param)}: '{excerpt(name)}' is given twice")
        seen.add(name)
    return keys
