"""Field paths as the query language names them: which names are fields (`check_field`, and
`check_document_field` for the fields of an execution), and the keys a list is sorted by
(`SORT_FIELDS`, `sort_keys`, `check_sortable`). The parameters, the filters and the
`_aggregate` pipeline all check their fields here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from procexec.engine.errors import BadRequest

#: a field path has at most this many parts
MAX_PATH_PARTS = 8
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_:#-]+)*\Z")

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
_DIRECTIONS = {"asc": 1, "ascending": 1, "desc": -1, "descending": -1}


def check_field(name: str, param: str) -> str:
    """A field path as the user gave it, or a `BadRequest` naming `param`."""
    if not _FIELD.match(name):
        raise BadRequest(f"{param}: '{name}' is not a field name")
    if name.count(".") >= MAX_PATH_PARTS:
        raise BadRequest(
            f"{param}: '{name}' is too deep (a path has at most {MAX_PATH_PARTS} parts)"
        )
    return name


def check_document_field(name: str, param: str) -> str:
    """A field of the execution document: hidden bookkeeping (`_meta`…) is not one."""
    check_field(name, param)
    if name.startswith("_") and name.split(".")[0] != "_id":  # `_id.name`: a group's key
        raise BadRequest(f"{param}: '{name}' is not a field of an execution")
    return name


def sort_keys(spec: dict[str, Any], param: str) -> list[tuple[str, int]]:
    """The keys of a JSON sort object (`{"start": -1}`, `{"name": "asc"}`)."""
    keys: list[tuple[str, int]] = []
    for name, direction in spec.items():
        if isinstance(direction, str) and direction.lower() in _DIRECTIONS:
            direction = _DIRECTIONS[direction.lower()]
        if isinstance(direction, bool) or direction not in (1, -1):
            raise BadRequest(f"{param}: direction of '{name}' must be 1 or -1")
        keys.append((check_field(name, param), int(direction)))
    return keys


def check_sortable(
    keys: list[tuple[str, int]], param: str, sortable: Sequence[str]
) -> list[tuple[str, int]]:
    """The keys, each a field of `sortable` given once."""
    seen: set[str] = set()
    for name, _ in keys:
        if name not in sortable:
            raise BadRequest(f"{param}: cannot sort by '{name}' (sortable: {', '.join(sortable)})")
        if name in seen:
            raise BadRequest(f"{param}: '{name}' is given twice")
        seen.add(name)
    return keys
