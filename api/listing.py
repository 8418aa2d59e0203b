"""How the list and get calls answer: JSON (the stored documents, unparsed when possible),
CSV or XML, as `Accept` asks (`api.formats.negotiate`: JSON by default, 406 when it names
none of `application/json`, `text/csv`, `application/xml`/`text/xml`).

CSV (`Accept: text/csv`) is flat: one row per execution, one column per top-level field, in
the document's order (`_id`, `service`, `name`, `environment`, `trigger`, `status`,
`message`, `reason`, `start`, `runAs`, `end`, `loaderMessage`, `phases`, `data`), or the
projected fields (`_id` first) when `_project` is given. `phases` is summarised as
`NAME:status` per phase, joined by `;` (`EXTRACT:success;LOAD:failed`); any other nested
value (`data`) is its compact JSON; a missing value is an empty cell. A text cell that a
spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
return) is written with a leading `'` (OWASP's advice against formula injection); numbers, and
texts that are plain numbers (`-5`), stay as they are.

XML (`Accept: application/xml` or `text/xml`, answered as `application/xml`) is the JSON
value element by element (the rules in `api.formats`)::

    <executions total="N">
      <execution>
        <_id>05f1…</_id><service>ETL</service><name>ECB_FX</name>…
        <phases type="array">
          <phase type="object"><name>EXTRACT</name><status>success</status>…
            <log type="array"><line>2021-07-01T16:30:13.390935800Z[UTC] info …</line></log>
          </phase>…
        </phases>
        <data type="object"><curves type="object"/><series type="object">
          <field name="2021-07-01" type="array"><item>#ECB_FX.EURAUD:SPOT</item>…</field>
        </series></data>
      </execution>…
    </executions>

Keys that are not plain XML names become `<field name="…">`; arrays are `type="array"` with
one child per item (`<phase>`, `<line>`, else `<item>`); nested objects `type="object"`,
numbers `type="number"`, booleans `type="boolean"`; `null` is `<x nil="true"/>`; characters
XML 1.0 cannot carry become U+FFFD. One execution is `<execution>…</execution>`, the
`_distinct` values `<values field="name" total="N"><value>…</value>…</values>`, the
`_fieldinfo` buckets `<buckets field="status" total="N"><bucket>…</bucket>…</buckets>`, the
`_aggregate` results `<results total="N"><result>…</result>…</results>`, an error
`<error status="404">message</error>` (with `x-odsl-error` as for JSON). In CSV, the buckets
are `_id,count` and the results have a column per top-level field.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

from procexec.api import formats
from procexec.api.errors import ApiError
from procexec.api.formats import Format, negotiate
from procexec.engine import answers
from procexec.engine.schema import DOCUMENT_FIELDS

CSV_TYPE = "text/csv; charset=utf-8"
#: what a text cell a spreadsheet would read as a formula starts with (OWASP's list)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
JSON_TYPE = "application/json"


def response_format(accept: str | None) -> Format:
    """The format to answer in; a 406 listing the formats offered when `Accept` names none."""
    chosen = negotiate(accept)
    if chosen is None:
        raise ApiError(
            406,
            f"Accept: '{accept}' names no format offered here; "
            f"ask for {formats.OFFERED_TEXT}, or */*",
        )
    return chosen


def json_array(docs: Sequence[bytes]) -> bytes:
    """A JSON array of documents already in JSON, joined in one copy (a page of documents
    runs to hundreds of kilobytes, and each copy of that many costs fresh pages)."""
    if not docs:
        return b"[]"
    parts = [b","] * (2 * len(docs) + 1)
    parts[0], parts[-1] = b"[", b"]"
    parts[1::2] = docs
    return b"".join(parts)


def json_list(docs: Sequence[bytes], total: int) -> Response:
    """The list call's JSON answer: documents already in JSON (counted against the answer's
    limit as the store read them), as an array."""
    body = json_array(docs)
    answers.fits(len(body))
    return Response(body, media_type=JSON_TYPE, headers={"x-total-count": str(total)})


def _answer(parts: Iterable[str]) -> bytes:
    """An answer's text built part by part, each part encoded and counted against the
    answer's limit as it comes (`AnswerTooLarge` at the first past it), then joined."""
    limit = answers.limit()
    budget = None if limit is None else answers.AnswerBudget(limit)
    encoded = []
    for part in parts:
        piece = part.encode()
        if budget is not None:
            budget.take(len(piece))
        encoded.append(piece)
    return b"".join(encoded)


def _parsed(docs: list[bytes]) -> Iterator[dict[str, Any]]:
    """The documents of a page, parsed one at a time; each stored text is let go once parsed,
    so that the page's text and its answer are not both held whole."""
    for index, raw in enumerate(docs):
        docs[index] = b""
        yield json.loads(raw)


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
    return _text(";".join(summary))


def _text(text: str) -> str:
    """A text cell, neutralised against formula injection as OWASP recommends: one that a
    spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
    return) gets a leading `'`, unless it is a plain number (`-5`, `+1.5e3`), which no
    spreadsheet reads as a formula."""
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _csv_lines(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The header row, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_text(column) for column in columns])
    for row in rows:
        writer.writerow(
            [_phases(row.get(c)) if c == "phases" else _cell(row.get(c)) for c in columns]
        )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def csv_text(
    rows: Sequence[Mapping[str, Any]],
    project: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> str:
    """The executions as CSV text, with a header row."""
    return "".join(_csv_lines(_columns(rows, project, exclude), rows))


def csv_list(
    docs: list[bytes],
    total: int,
    project: Sequence[str] | None,
    exclude: Sequence[str] | None,
) -> Response:
    """The list call's CSV answer, from the page's documents as stored JSON: parsed one at a
    time (once to find the columns, unless `_project` names them, once to write the rows),
    the text counted against the answer's limit as it is written."""
    if project:
        columns = _columns([], project, exclude)
    else:
        extra = [key for raw in docs for key in json.loads(raw) if key not in DOCUMENT_FIELDS]
        columns = _columns([dict.fromkeys(extra)], project, exclude)
    body = _answer(_csv_lines(columns, _parsed(docs)))
    return Response(body, media_type=CSV_TYPE, headers={"x-total-count": str(total)})


def page_answer(
    docs: list[bytes],
    total: int,
    fmt: Format,
    project: Sequence[str] | None,
    exclude: Sequence[str] | None,
) -> Response:
    """The list call's page (its documents as stored JSON) in the format asked for."""
    if fmt == "xml":
        return xml_list(docs, total)
    if fmt == "csv":
        return csv_list(docs, total, project, exclude)
    return json_list(docs, total)


def distinct_values(values: Iterable[Any], field: str, fmt: Format) -> Response:
    """The distinct values of a field: a JSON array, a one-column CSV, or XML `<values>`."""
    values = list(values)
    if fmt == "xml":
        headers = {"x-total-count": str(len(values))}
        body = formats.values_xml(values, field)
        answers.fits(len(body))
        return Response(body, media_type=formats.XML_TYPE, headers=headers)
    if fmt == "csv":
        return _table([field], [[value] for value in values])
    return _json_answer(values)


def xml_list(docs: list[bytes], total: int) -> Response:
    """The executions as XML `<executions total="N">`, the total in `x-total-count` too: from
    the page's documents as stored JSON, parsed and written one at a time, the text counted
    against the answer's limit as it is written."""
    body = _answer(formats.list_xml(_parsed(docs), total))
    return Response(body, media_type=formats.XML_TYPE, headers={"x-total-count": str(total)})


def document_response(
    doc: Mapping[str, Any],
    fmt: Format,
    project: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> Response:
    """One execution (already projected by `project` or `exclude`, as `_project` asked): JSON,
    XML `<execution>`, or CSV (the list's header and one row, for the same `_project`)."""
    if fmt == "xml":
        body, media = formats.document_xml(doc), formats.XML_TYPE
    elif fmt == "csv":
        body, media = csv_text([doc], project, exclude).encode(), CSV_TYPE
    else:
        body, media = bytes(JSONResponse(doc).body), JSON_TYPE
    answers.fits(len(body))
    return Response(body, media_type=media)


def fieldinfo_buckets(buckets: Sequence[Mapping[str, Any]], field: str, fmt: Format) -> Response:
    """`_fieldinfo`: the buckets as a JSON array, as CSV `_id,count`, or as XML
    `<buckets field="status" total="N"><bucket>…</bucket>…</buckets>`."""
    if fmt == "csv":
        return _table(["_id", "count"], [[bucket["_id"], bucket["count"]] for bucket in buckets])
    return _results(buckets, fmt, "buckets", "bucket", field=field)


def aggregate_results(results: Sequence[Mapping[str, Any]], fmt: Format) -> Response:
    """`_aggregate`: the results as a JSON array, as CSV (a column per top-level field, in the
    order they appear), or as XML `<results total="N"><result>…</result>…</results>`."""
    if fmt == "csv":
        columns = list(dict.fromkeys(key for row in results for key in row))
        return _table(columns, [[row.get(column) for column in columns] for row in results])
    return _results(results, fmt, "results", "result")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Response:
    """A CSV of a header and rows, their number in `x-total-count`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_text(column) for column in header])
    writer.writerows([_cell(value) for value in row] for row in rows)
    body = out.getvalue().encode()
    answers.fits(len(body))
    headers = {"x-total-count": str(len(rows))}
    return Response(body, media_type=CSV_TYPE, headers=headers)


def _results(
    rows: Sequence[Mapping[str, Any]], fmt: Format, tag: str, row_tag: str, **attributes: str
) -> Response:
    if fmt == "xml":
        names = {name: formats.xml_text(value) for name, value in attributes.items()}
        root = ET.Element(tag, {**names, "total": str(len(rows))})
        for row in rows:
            formats.fill_object(ET.SubElement(root, row_tag), row)
        body = formats.serialize(root)
        answers.fits(len(body))
        headers = {"x-total-count": str(len(rows))}
        return Response(body, media_type=formats.XML_TYPE, headers=headers)
    return _json_answer(rows)


def _json_answer(values: Sequence[Any]) -> Response:
    """Values built in Python as a compact JSON array, their number in `x-total-count`."""
    body = json.dumps(values, separators=(",", ":")).encode()
    answers.fits(len(body))
    return Response(body, media_type=JSON_TYPE, headers={"x-total-count": str(len(values))})
