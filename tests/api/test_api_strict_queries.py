"""Strict queries: a typo is a 400 that says what was wrong, never an empty answer.

A scheduler that polls `status=failed` reads an empty list as "no failures", so a misspelt
field (`stauts=failed`), a doubled operator (`_filter=status==failed`), an unclosed value
function (`name=in(ECB_FX,DEMO`) or an unknown projection (`_project=nope`) must be refused:
each path that names a field checks it against the execution document's one schema
(`procexec.engine.schema`), paths under `data` staying free. A NUL in a query or a trigger is
refused alike on SQLite and on MongoDB (mongomock standing in), where SQLite alone would cut
the text there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.app import create_app
from procexec.engine.domain import Scope
from procexec.engine.query import Query
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token
from tests.api.api_helpers import BASES, KNOWN, OPTIONS, Dispatcher, Service, bearer, free_process
from tests.engine.conftest import mongo_database
from tests.engine.query_strategies import DOCS, PROD

URL = f"{BASES[0]}/v1"
REASON_NUL = "_reason: a NUL character (\\x00) is not allowed"
SORTABLE = (
    "(sortable: _id, service, name, environment, trigger, status, message, reason, start, "
    "runAs, end, loaderMessage)"
)


def refused(client: TestClient, headers: dict[str, str], params: Any) -> str:
    """The message of the 400 a list query gets (the same in the body and `x-odsl-error`)."""
    response = client.get(URL, params=params, headers=headers)
    assert response.status_code == 400, (params, response.status_code, response.text[:300])
    message: str = response.json()["error"]
    assert response.headers["x-odsl-error"] == message.replace("\x00", "\\x00")
    return message


# --- the typos of the issue, on the real app over a real SQLite file --------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stauts": "failed"},
         "stauts: unknown query parameter, and not a field of an execution (did you mean "
         "'status'?) (options: _filter, _search, _sort, _project, _limit, _skip, _distinct, "
         "_fieldinfo, _aggregate; fields: _id, service, name, environment, trigger, status, "
         "message, reason, start, runAs, phases, end, loaderMessage, data; "
         "phases.<name|start|status|message|log|end>; any path under data)"),
        ({"_filter": "status==failed"},
         "_filter: unexpected '=' at position 7: after 'status' and its operator comes a value "
         "(one operator, such as status=x; quote a value that starts with '=')"),
        ({"name": "in(ECB_FX,DEMO"},
         "name: malformed call of in(): '(' at position 2 is never closed by a ')' at the end "
         "of 'in(ECB_FX,DEMO'"),
        ({"_project": "nope"}, "_project: 'nope' is not a field of an execution" + KNOWN),
    ],
)  # fmt: skip
def test_the_issues_typos_are_400s_that_say_what_was_wrong(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], message: str
) -> None:
    assert refused(client, service.read_headers, params) == message


def test_a_typo_in_a_form_body_is_refused_as_in_the_url(
    client: TestClient, service: Service, corpus: list[Any]
) -> None:
    response = client.request(
        "GET",
        URL,
        content="stauts=failed",
        headers={**service.read_headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("stauts: unknown query parameter")


# an unknown top-level field, through every path that names a field
GROUP = '{"$group": {"_id": "$status", "n": {"$sum": 1}}}'


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"nope": "1"}, "nope: unknown query parameter, and not a field of an execution"),
        ({"nope.deeper": "1"}, "nope.deeper: unknown query parameter, and not a field of an "),
        ({"_filter": "nope=1"}, "_filter: 'nope' is not a field of an execution"),
        ({"_filter": "status=failed or not nope!=1"},
         "_filter: 'nope' is not a field of an execution"),
        ({"_filter": '{"nope": 1}'}, "_filter: 'nope' is not a field of an execution"),
        ({"_filter": '{"$or": [{"status": "failed"}, {"nope": {"$exists": true}}]}'},
         "_filter: 'nope' is not a field of an execution"),
        ({"_filter": "{nope: /x/i}"}, "_filter: 'nope' is not a field of an execution"),
        ({"_filter": "phases.nope=1"}, "_filter: 'phases.nope' is not a field of a phase "
         "(phase fields: name, start, status, message, log, end)"),
        ({"_filter": "name.first=1"}, "_filter: 'name.first': the field 'name' holds one value, "
         "it has no fields (paths go into phases and data)"),
        ({"_sort": "-nope"}, f"_sort: cannot sort by 'nope' {SORTABLE}"),
        ({"_sort": '{"nope": 1}'}, f"_sort: cannot sort by 'nope' {SORTABLE}"),
        ({"_project": "name,nope"}, "_project: 'nope' is not a field of an execution" + KNOWN),
        ({"_project": "-nope"}, "_project: 'nope' is not a field of an execution" + KNOWN),
        ({"_project": '{"nope": 1}'}, "_project: 'nope' is not a field of an execution" + KNOWN),
        ({"_project": "phases.nope"}, "_project: 'phases.nope' is not a field of a phase"),
        ({"_distinct": "nope"}, "_distinct: 'nope' is not a field of an execution" + KNOWN),
        ({"_fieldinfo": "nope"}, "_fieldinfo: 'nope' is not a field of an execution" + KNOWN),
        ({"_fieldinfo": "phases.nope"}, "_fieldinfo: 'phases.nope' is not a field of a phase"),
        ({"_aggregate": '[{"$match": {"nope": 1}}, {"$count": "n"}]'},
         "_aggregate: stage 1 ($match): 'nope' is not a field of an execution" + KNOWN),
        ({"_aggregate": '[{"$group": {"_id": "$nope"}}]'},
         "_aggregate: stage 1 ($group): 'nope' is not a field of an execution" + KNOWN),
        ({"_aggregate": '[{"$group": {"_id": {"a": "$nope"}}}]'},
         "_aggregate: stage 1 ($group): 'nope' is not a field of an execution" + KNOWN),
        ({"_aggregate": '[{"$group": {"_id": null, "m": {"$max": "$nope"}}}]'},
         "_aggregate: stage 1 ($group): 'nope' is not a field of an execution" + KNOWN),
        ({"_aggregate": '[{"$sort": {"nope": 1}}, {"$count": "n"}]'},
         f"_aggregate: stage 1 ($sort): cannot sort by 'nope' {SORTABLE}"),
        ({"_aggregate": f'[{GROUP}, {{"$match": {{"count": 1}}}}]'},
         "_aggregate: stage 2 ($match): 'count' is not a field here (fields here: _id, n)"),
        ({"_aggregate": f'[{GROUP}, {{"$sort": {{"count": 1}}}}]'},
         "_aggregate: stage 2 ($sort): cannot sort by 'count' (fields here: _id, n)"),
    ],
)  # fmt: skip
def test_an_unknown_field_is_refused_on_every_path(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], message: str
) -> None:
    assert refused(client, service.read_headers, params).startswith(message)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "=failed"}, "status: the value '=failed' starts with '='"),
        ({"start": ">2021-07-19"}, "start: the value '>2021-07-19' starts with '>'"),
        ({"name": "range(a,b)x"}, "name: malformed call of range(): '(' at position 5 is never "
         "closed"),
        ({"name": "regex(^E"}, "name: malformed call of regex(): '(' at position 5"),
        ({"_filter": "name=in(ECB_FX,DEMO"},
         "_filter: unbalanced parentheses: '(' at position 7 is never closed"),
        ({"_filter": "start>=<2021-07-19"}, "_filter: unexpected '<' at position 7"),
        ({"_filter": "status=failed and"}, "_filter: expected a condition such as status=failed "
         "at the end"),
        ({"_filter": "status failed"}, "_filter: expected =, !=, >, >=, < or <= after 'status'"),
        ({"_limt": "5"}, "_limt: unknown query parameter (did you mean '_limit'?)" + OPTIONS),
    ],
)  # fmt: skip
def test_what_the_grammar_does_not_define_is_refused(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str], message: str
) -> None:
    assert refused(client, service.read_headers, params).startswith(message)


@pytest.mark.parametrize(
    "params",
    [
        {"data.nope": "1"},
        {"data.series.1999-01-01": "x"},
        {"_filter": '{"data.nope.deeper": {"$exists": true}}'},
        {"_distinct": "data.nope"},
        {"_fieldinfo": "data.nope"},
        {"_project": "data.nope"},
        {"_aggregate": '[{"$group": {"_id": "$data.nope", "n": {"$sum": 1}}}]'},
        {"phases.0.log.0": "x"},
        {"_filter": 'name="=x"'},  # a quoted value may start with an operator
    ],
)
def test_paths_under_data_stay_free(
    client: TestClient, service: Service, corpus: list[Any], params: dict[str, str]
) -> None:
    response = client.get(URL, params=params, headers=service.read_headers)
    assert response.status_code == 200, response.text
    if "_project" not in params and "_aggregate" not in params:
        assert response.json() == []


def test_the_schema_is_the_seed_documents() -> None:
    """The one schema lists the seed execution's fields, in its order, and its phases'."""
    from procexec.engine.schema import DOCUMENT_FIELDS, PHASE_FIELDS

    seed = json.loads((Path(__file__).parents[1] / "data" / "seed_execution.json").read_text())
    assert tuple(seed) == DOCUMENT_FIELDS
    assert all(tuple(phase) == PHASE_FIELDS for phase in seed["phases"])


# --- NUL, on both stores ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mongomock"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExecutionStore]:
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "procexec.db")
        yield store
        store.close()
        return
    with mongo_database() as mongo:
        yield mongo


@pytest.fixture
def nul_app(any_store: ExecutionStore, tmp_path: Path) -> Iterator[tuple[TestClient, dict, dict]]:
    """The real app over each store, the corpus in it; yields the client, read and run headers."""
    for doc in DOCS:
        any_store.insert(copy.deepcopy(doc))
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    app = create_app(settings, store=any_store, dispatch=Dispatcher())
    app.state.procexec.registry.add(free_process())
    read = bearer(create_token(any_store, "bob", Scope.READ))
    run = bearer(create_token(any_store, "alice", Scope.RUN))
    with TestClient(app) as client:
        yield client, read, run


def _total(store: ExecutionStore) -> int:
    return sum(store.list(Query(environment=env, limit=0))[1] for env in (PROD, "staging"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "ECB_FX\x00junk"},
         "name: a NUL character (\\x00) at position 6 of the value is not allowed"),
        ({"name": "in(ECB_FX\x00,DEMO)"},
         "name: a NUL character (\\x00) at position 9 of the value is not allowed"),
        ({"_filter": "name=ECB_FX\x00"},
         "_filter: a NUL character (\\x00) at position 11 of the value is not allowed"),
        ({"_filter": '{"name": "ECB_FX\\u0000junk"}'},
         "_filter: a NUL character (\\u0000) in a string is not allowed"),
        ({"_filter": '{name: "ECB\\u0000"}'},
         "_filter: a NUL character (\\u0000) in a string is not allowed"),
        ({"_aggregate": '[{"$match": {"name": "ECB_FX\\u0000"}}, {"$count": "n"}]'},
         "_aggregate: a NUL character (\\u0000) in a string is not allowed"),
        ({"_search": "ecb\x00fx"}, "_search: a NUL character (\\x00) at position 3"),
        ({"na\x00me": "ECB_FX"}, "na\x00me: a NUL character (\\x00) at position 2 of the name"),
    ],
)  # fmt: skip
def test_a_nul_in_a_query_is_refused_on_both_stores(
    nul_app: tuple[TestClient, dict, dict], params: dict[str, str], message: str
) -> None:
    client, read, _ = nul_app
    got = refused(client, read, params)
    assert got.startswith(message), got


@pytest.mark.parametrize(
    ("body", "query", "message"),
    [
        ({"name": "DEMO", "_reason": "why\x00not"}, {}, REASON_NUL),
        ({"name": "DEMO"}, {"_reason": "why\x00not"}, REASON_NUL),
    ],
)  # fmt: skip
def test_a_nul_in_a_reason_is_refused_and_nothing_is_written_on_both_stores(
    nul_app: tuple[TestClient, dict, dict],
    any_store: ExecutionStore,
    body: dict[str, Any],
    query: dict[str, str],
    message: str,
) -> None:
    """The reason is a field of the execution, which filters read: refused."""
    client, _, run = nul_app
    before = _total(any_store)
    response = client.post(URL, content=json.dumps(body), params=query, headers=run)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == message
    assert _total(any_store) == before
    ok = client.post(URL, json={"name": "DEMO", "_reason": "why not"}, headers=run)
    assert ok.status_code == 202, ok.text  # the same trigger without the NUL is taken
    assert _total(any_store) == before + 1


def test_a_nul_in_a_parameter_value_is_kept_faithfully_on_both_stores(
    nul_app: tuple[TestClient, dict, dict], any_store: ExecutionStore
) -> None:
    """Parameters are no field of the execution (no filter reads them): a NUL in a value is
    kept whole, on both stores, not cut as SQLite's functions would cut it."""
    client, _, run = nul_app
    params = {"text": "a\x00b", "list": ["\x00", "c\x00"]}
    response = client.post(URL, json={"name": "FREE", "body": params}, headers=run)
    assert response.status_code == 202, response.text
    assert any_store.get_meta(response.json()["_id"])["input"]["text"] == "a\x00b"
    assert any_store.get_meta(response.json()["_id"])["input"]["list"] == ["\x00", "c\x00"]
