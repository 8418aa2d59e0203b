"""Schemathesis fuzzes every operation of the app's `/openapi.json` over the real app (a real
SQLite file, a token of scope `run`): no request, valid or malformed, gets a 5xx, and every
answer is one the description documents (status, content type, headers, error body).

The description is read once, from an app over a throwaway store; each operation then runs
against the `service` fixture of the API tests with a few stored executions, whose ids (and
the known processes and sources) schemathesis mixes into the generated path parameters so that
reads, cancels and reschedules find something. Schemathesis generates valid requests and
malformed ones (its negative mode and its coverage phase: missing and mistyped bodies, wrong
types, boundary values); each example also picks an `Accept` header (JSON, CSV, XML).
Deterministic (derandomized, no example database) and bounded (`MAX_EXAMPLES` per operation),
for CI.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response
from schemathesis.core.result import Ok

from procexec.api.access import SOURCES
from procexec.api.app import create_app
from procexec.api.event_hub import EventHub
from procexec.api.runs_hub import RunsHub
from procexec.engine.document import json_schemas
from procexec.engine.settings import Settings
from procexec.engine.store.sqlite import SQLiteStore
from tests.api.api_helpers import BASES, Service
from tests.documents import execution

#: the most examples generated for one operation
MAX_EXAMPLES = 100

#: stored before each operation: two finished runs and a running one (cancellable)
EXECUTIONS = [
    execution("ecb-1", "2021-07-21T16:30:07.858Z"),
    execution("ecb-2", "2021-07-22T16:30:05.123Z", status="failed"),
    {**execution("demo-1", "2021-07-23T09:00:00.000Z", name="DEMO"), "status": "running"},
]
PROCESSES = ["DEMO", "ECB_FX", "ECB_FX_CROSS"]

#: the formats a read may ask for, which the description leaves to `Accept`
EXTRA_HEADERS = st.sampled_from(
    [
        {},
        {"Accept": "text/csv"},
        {"Accept": "application/xml"},
        {"Accept": "*/*"},
    ]
)

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",  # positive and negative (requests the description rules out)
            "deterministic": True,
            "database": "none",
            "max-examples": MAX_EXAMPLES,
        },
        "dictionaries": {
            "executions": {"values": [doc["_id"] for doc in EXECUTIONS]},
            "processes": {"values": PROCESSES},
            "sources": {"values": ["private", "public", "all"]},
        },
        "parameters": {
            "path.execution_id": {"dictionary": "executions", "probability": 0.5},
            "path.key": {"dictionary": "executions", "probability": 0.3},
            "path.source": {"dictionary": "sources", "probability": 0.7},
            "path.name": {"dictionary": "processes", "probability": 0.5},
        },
        # a backfill's range may be well formed and still refused (400): `to` in the future or
        # before `from`, more fire times than a backfill makes; and a time of the form the
        # pattern describes may not exist (`2021-02-30`, here and in the trail's `since`): no
        # schema says so
        "operations": [
            {
                "include-path-regex": "(/backfill|/audit/v1)$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [200, 400, 401, 403, 404, 409]
                    }
                },
            },
            # the list call's options are declared as strings, and a string is not a query:
            # `_filter=a`, `_sort=x` or `_distinct=y` well formed by their schema name no field
            # (a 400 naming it), nor `_project=y` on one execution; and on `v1/{key}`, an id takes
            # only `_project` and `_params`, a source not `_params`; the same filters on the
            # all-runs stream (`v1/events`)
            {
                "include-name-regex": (
                    "^GET .*-exec/v1(/events|/\\{key\\}|/\\{source\\}/\\{execution_id\\})?$"
                ),
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [200, 400, 401, 403, 404]}
                },
            },
        ],
    }
)


#: what any HTTP server can send in a header value
HEADER_TEXT = re.compile(r"[\x20-\x7e]+")


def errors_name_the_problem(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """An error is `{"error": <text>, "status": <its status>}` (`<error status="N">` in XML),
    its text also in `x-odsl-error` as printable ASCII: the in-process transport sends any
    header, where a real server refuses a control character (a NUL echoed from a path, once)."""
    if response.status_code < 400:
        return None
    headers = {name: values[0] for name, values in response.headers.items()}
    _assert_named_error(response.status_code, headers, response.content)
    return True


#: a page of the list call as `/openapi.json` describes it, without the other answers' branch
PAGE = jsonschema_rs.validator_for(
    {
        "type": "array",
        "items": {"$ref": "#/$defs/Execution"},
        "$defs": json_schemas("#/$defs/{model}", projected=True),
    }
)


def pages_are_executions(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A list call's JSON answer is a page of executions: its description also allows the
    other arrays that `_distinct`, `_fieldinfo` and `_aggregate` answer, which schemathesis
    never asks for (they are not described as parameters), so here that branch is ruled out."""
    path, key = case.operation.path, (case.path_parameters or {}).get("key")
    listing = path in {f"{base}/v1" for base in BASES} or (
        path in {f"{base}/v1/{{key}}" for base in BASES} and key in SOURCES
    )
    answers = {"_distinct", "_fieldinfo", "_aggregate"} & set(case.query or {})
    if case.method.upper() != "GET" or not listing or answers or response.status_code != 200:
        return None
    if not response.headers.get("content-type", [""])[0].startswith("application/json"):
        return None
    errors = [str(error) for error in PAGE.iter_errors(json.loads(response.content))]
    assert not errors, errors
    return True


def _assert_named_error(status: int, headers: Mapping[str, str], content: bytes) -> None:
    header = headers.get("x-odsl-error", "")
    assert HEADER_TEXT.fullmatch(header), f"x-odsl-error: {header!r}"
    if headers.get("content-type", "").startswith("application/xml"):
        root = ET.fromstring(content)
        body = {"error": root.text, "status": int(root.attrib["status"])}
    else:
        body = json.loads(content)
    assert body["status"] == status, body
    assert isinstance(body["error"], str) and body["error"].strip(), body


def _described() -> Any:
    """The app's description, as a client reads it from `/openapi.json`."""
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteStore(Path(directory) / "procexec.db")
        settings_ = Settings.from_env({"PROCEXEC_DATA_DIR": directory})
        app = create_app(settings_, store=store, dispatch=lambda *_: None)
        try:
            return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
        finally:
            store.close()


schema = _described()


@pytest.fixture
def seeded(service: Service) -> Service:
    for doc in EXECUTIONS:
        service.store.insert(copy.deepcopy(doc))
    runs = RunsHub(service.store, service.settings.read_timeout)
    runs.idle_seconds = 0.2  # the all-runs stream, answered 200, closes soon (nothing changes)
    service.app.state.runs_hub = runs
    # the running execution's own stream, answered 200, closes soon too (it would wait for
    # the run's end, or five idle minutes)
    events = EventHub(service.store, service.settings.max_log_lines, service.settings.read_timeout)
    events.idle_seconds = 0.2
    service.app.state.event_hub = events
    return service


@schema.parametrize()
@schema.given(extra=EXTRA_HEADERS)
@settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_request_gets_a_5xx_or_an_undocumented_answer(
    case: Case, extra: dict[str, str], seeded: Service
) -> None:
    case.call_and_validate(
        app=seeded.app,
        headers={**seeded.admin_headers, **extra},
        additional_checks=[errors_name_the_problem, pages_are_executions],
    )


def test_every_operation_is_fuzzed() -> None:
    """The description names every route of both mounts (a route missing from it would
    silently escape the fuzzing)."""
    labels = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation schemathesis cannot read
        labels.add(result.ok().label)
    for base in ("/service/process-exec", "/api/process-exec"):
        assert {
            f"GET {base}",
            f"POST {base}",
            f"GET {base}/v1",
            f"POST {base}/v1",
            f"GET {base}/v1/{{key}}",
            f"GET {base}/v1/{{source}}/{{execution_id}}",
            f"POST {base}/v1/{{execution_id}}/cancel",
        } <= labels
    for base in ("/service/process", "/api/process"):
        assert {
            f"GET {base}/v1",
            f"GET {base}/v1/{{name}}",
            f"POST {base}/v1/{{name}}/enable",
            f"POST {base}/v1/{{name}}/disable",
            f"PUT {base}/v1/{{name}}/schedule",
            f"POST {base}/v1/{{name}}/schedule",
            f"POST {base}/v1/{{name}}/backfill",
        } <= labels
    assert {"GET /service/audit/v1", "GET /api/audit/v1"} <= labels


# --- raw JSON bodies: what schemathesis does not send ---------------------------------------
# Schemathesis sends its bodies as UTF-8 JSON of values it generates, so some JSON never
# reaches the API from it: lone surrogate escapes ("\\ud800"), integers past a float or past
# Python's 4300 digits, nesting deeper than the parser's recursion, bytes that are not UTF-8.

#: text, half of it with a lone surrogate (which `json.dumps` escapes as "\\udXXX")
TEXT = st.text(max_size=6) | st.builds(
    "{}{}{}".format, st.text(max_size=3), st.characters(categories=["Cs"]), st.text(max_size=3)
)
#: numbers, some past the largest float, some past Python's 4300 digits (as JSON text)
BIG = st.sampled_from(["1" + "0" * 309, "-" + "9" * 4000, "1" + "0" * 4300, "1e999", "NaN"])
#: any JSON value
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
#: bodies no JSON encoder writes
RAW = st.sampled_from([b"[" * 100_000, b"{" * 5000, b"", b" ", b"\xff\xfe", b'"\\udfff"'])


def _json_with_big(fields: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """The JSON of `fields`, one of its values at times replaced by a `BIG` number."""

    def encode(payload: dict[str, Any], big: str | None, index: int) -> bytes:
        if big is not None and payload:
            payload = {**payload, sorted(payload)[index % len(payload)]: "BIG"}
            return json.dumps(payload).replace('"BIG"', big, 1).encode()
        return json.dumps(payload).encode()

    return st.builds(encode, fields, st.none() | BIG, st.integers(0, 3))


TRIGGER_BODIES = st.one_of(
    _json_with_big(
        st.fixed_dictionaries(
            {"name": st.sampled_from(PROCESSES) | TEXT | JSON_VALUES},
            optional={
                "body": st.dictionaries(TEXT, JSON_VALUES, max_size=3) | JSON_VALUES,
                "input": JSON_VALUES,
                "_reason": TEXT | JSON_VALUES,
                "_delay": st.integers(0, 1000) | TEXT | JSON_VALUES,
            },
        )
    ),
    RAW,
    st.binary(max_size=16),
)
SCHEDULE_BODIES = st.one_of(
    _json_with_big(
        st.fixed_dictionaries(
            {"schedule": st.sampled_from([None, "0 7 * * 1-5"]) | TEXT | JSON_VALUES},
            optional={"timezone": st.sampled_from(["UTC", "Europe/London"]) | TEXT | JSON_VALUES},
        )
    ),
    RAW,
    st.binary(max_size=16),
)
RAW_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@RAW_SETTINGS
@given(content=TRIGGER_BODIES)
def test_no_trigger_body_gets_a_5xx(client: TestClient, service: Service, content: bytes) -> None:
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, content=content)
    assert response.status_code in (202, 400, 404), (content[:200], response.text)
    if response.status_code >= 400:
        _assert_named_error(response.status_code, response.headers, response.content)


@RAW_SETTINGS
@given(content=SCHEDULE_BODIES)
def test_no_schedule_body_gets_a_5xx(client: TestClient, service: Service, content: bytes) -> None:
    path = "/service/process/v1/DEMO/schedule"
    response = client.put(path, headers=service.admin_headers, content=content)
    assert response.status_code in (200, 400), (content[:200], response.text)
    if response.status_code >= 400:
        _assert_named_error(response.status_code, response.headers, response.content)


BACKFILL_BODIES = st.one_of(
    _json_with_big(
        st.fixed_dictionaries(
            {
                "from": st.sampled_from(["2021-07-05", "2021-07-05T00:00:00Z"]) | TEXT,
                "to": st.sampled_from(["2021-07-12", "2021-07-06T00:00:00+02:00"]) | JSON_VALUES,
            },
            optional={"dryRun": st.booleans() | JSON_VALUES},
        )
    ),
    RAW,
    st.binary(max_size=16),
)


@RAW_SETTINGS
@given(content=BACKFILL_BODIES)
def test_no_backfill_body_gets_a_5xx(client: TestClient, service: Service, content: bytes) -> None:
    path = "/service/process/v1/ECB_FX/backfill"
    response = client.post(path, headers=service.admin_headers, content=content)
    assert response.status_code in (200, 400), (content[:200], response.text)
    if response.status_code >= 400:
        _assert_named_error(response.status_code, response.headers, response.content)
