"""How the list call answers: JSON (the stored documents, unparsed when possible) or CSV.

CSV (`Accept: text/csv`) is flat: one row per execution, one column per top-level field, in
the document's order (`_id`, `service`, `name`, `environment`, `trigger`, `status`,
`message`, `reason`, `start`, `runAs`, `end`, `loaderMessage`, `phases`, `data`), or the
projected fields (`_id` first) when `_project` is given. `phases` is summarised as
`NAME:status` per phase, joined by `;` (`EXTRACT:success;LOAD:failed`); any other nested
value (`data`) is its compact JSON; a missing value is an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.responses import Response

from engine.store.base import DOCUMENT_FIELDS

CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"


def wants_csv(accept: str | None) -> bool:
    """True when the `Accept` header prefers `text/csv` to JSON."""
    if not accept:
        return False
    weights: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        media = media.lower()
        if media not in weights or weights[media][0] < weight:
            weights[media] = (weight, position)
    csv_weight, csv_position = weights.get("text/csv", (0.0, 0))
    if csv_weight <= 0:
        return False
    json_weight, json_position = weights.get("application/json", (0.0, 0))
    return csv_weight > json_weight or (csv_weight == json_weight and csv_position < json_position)


def json_list(texts: Sequence[str], total: int) -> Response:
    """A JSON array of documents already in JSON."""
    body = ("[" + ",".join(texts) + "]").encode()
    return Response(body, media_type=JSON_TYPE, headers={"x-total-count": str(total)})


def _columns(rows: Sequence[Mapping[str, Any]], project: Sequence[str] | None,
             exclude: Sequence[str] | None) -> list[str]:  # fmt: skip
    if project:
        return list(dict.fromkeys(["_id", *(name.split(".")[0] for name in project)]))
    dropped = {name for name in exclude or () if "." not in name}
    columns = [name for name in DOCUMENT_FIELDS if name not in dropped]
    extra = dict.fromkeys(key for row in rows for key in row if key not in DOCUMENT_FIELDS)
    return columns + [key for key in extra if key not in dropped]


def _phases(value: Any) -> str:
    if not isinstance(value, list):
        return _cell(value)
    summary = []
    for phase in value:
        if not isinstance(phase, Mapping):
            summary.append(_cell(phase))
            continue
        parts = [str(phase[key]) for key in ("name", "status") if phase.get(key) is not None]
        summary.append(":".join(parts))
    return ";".join(summary)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def csv_text(
    rows: Sequence[Mapping[str, Any]],
    project: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> str:
    """The executions as CSV text, with a header row."""
    columns = _columns(rows, project, exclude)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [_phases(row.get(c)) if c == "phases" else _cell(row.get(c)) for c in columns]
        )
    return out.getvalue()


def csv_list(
    rows: Sequence[Mapping[str, Any]],
    total: int,
    project: Sequence[str] | None,
    exclude: Sequence[str] | None,
) -> Response:
    return Response(
        csv_text(rows, project, exclude).encode(),
        media_type=CSV_TYPE,
        headers={"x-total-count": str(total)},
    )


def distinct_values(values: Iterable[Any], field: str, as_csv: bool) -> Response:
    """The distinct values of a field: a JSON array, or a one-column CSV."""
    values = list(values)
    headers = {"x-total-count": str(len(values))}
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([field])
        writer.writerows([_cell(value)] for value in values)
        return Response(out.getvalue().encode(), media_type=CSV_TYPE, headers=headers)
    body = json.dumps(values, separators=(",", ":")).encode()
    return Response(body, media_type=JSON_TYPE, headers=headers)
