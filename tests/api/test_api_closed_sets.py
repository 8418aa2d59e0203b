"""Closed sets: a filter's value on `status`, `trigger` or `phases.status` must be one the
platform writes there, else a 400 naming the parameter and the values allowed.

A scheduler that polls `status=fialed` (or `status=FAILED`) would read the empty list as "nothing
failed"; the value is refused wherever it appears (a plain parameter, `in()`, `ne()`, a
comparison, `_filter` as an expression or as JSON, `_aggregate`'s `$match`), with the nearest
value suggested. `null` (a missing value), a regular expression and `$exists` stay allowed.
The query is checked once, when it is read: both stores, SQLite and MongoDB (mongomock standing
in), answer alike.
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
from procexec.api.errors import error_header
from procexec.engine.domain import PhaseStatus, Scope, Status, Trigger
from procexec.engine.schema import CLOSED_FIELDS
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import create_token
from tests.api.api_helpers import BASES, Dispatcher, bearer
from tests.engine.conftest import mongo_database
from tests.engine.query_strategies import DOCS, PROD

URL = f"{BASES[0]}/v1"
STATUSES = "(allowed: triggered, running, waiting, retrying, success, warning, failed)"
TRIGGERS = "(allowed: scheduled, manual, subscription)"
PHASE_STATUSES = "(allowed: running, success, failed)"
#: the corpus's executions in the environment the calls read
PROD_DOCS = [doc for doc in DOCS if doc["environment"] == PROD]


def _serve(store: ExecutionStore, tmp_path: Path) -> Iterator[tuple[TestClient, dict]]:
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    app = create_app(settings, store=store, dispatch=Dispatcher())
    read = bearer(create_token(store, "bob", Scope.READ))
    with TestClient(app) as client:
        yield client, read


@pytest.fixture(params=["sqlite", "mongomock"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, dict]]:
    """The real app over each store, the query tests' corpus in it; yields the client and the
    headers of a read token."""
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "procexec.db")
        yield from _serve(sqlite, tmp_path)
        sqlite.close()
        return
    with mongo_database() as mongo:
        yield from _serve(mongo, tmp_path)


def refused(api: tuple[TestClient, dict], params: Any) -> str:
    """The message of the 400 a list query gets, the same in the body and in `x-odsl-error`."""
    client, headers = api
    response = client.get(URL, params=params, headers=headers)
    assert response.status_code == 400, (params, response.status_code, response.text[:300])
    message: str = response.json()["error"]
    assert response.headers["x-odsl-error"] == error_header(message)
    return message


def listed(api: tuple[TestClient, dict], params: Any) -> list[str]:
    """The ids a list query answers (every page)."""
    client, headers = api
    response = client.get(URL, params=[*params, ("_limit", "-1")], headers=headers)
    assert response.status_code == 200, response.text
    return sorted(doc["_id"] for doc in response.json())


def ids(status: str | None = None, **fields: str) -> list[str]:
    """The ids of the corpus's executions with that status (and fields), as the list reads."""
    wanted = {**fields, **({} if status is None else {"status": status})}
    return sorted(
        doc["_id"] for doc in PROD_DOCS if all(doc.get(k) == v for k, v in wanted.items())
    )


def test_a_plain_value_outside_the_set_is_refused(api: tuple[TestClient, dict]) -> None:
    assert refused(api, {"status": "fialed"}) == (
        f"status: 'fialed' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )
    assert listed(api, [("status", "failed")]) == ids("failed") != []


def test_an_upper_case_value_is_refused_with_a_suggestion(api: tuple[TestClient, dict]) -> None:
    """Values match as the platform writes them: `FAILED` is no status, but `failed` is near."""
    assert refused(api, {"status": "FAILED"}) == (
        f"status: 'FAILED' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )
    assert refused(api, {"trigger": "Manual"}) == (
        f"trigger: 'Manual' is not a value of trigger (did you mean 'manual'?) {TRIGGERS}"
    )


def test_a_value_in_in_is_refused(api: tuple[TestClient, dict]) -> None:
    assert refused(api, {"status": "in(failed,runing)"}) == (
        f"status: 'runing' is not a value of status (did you mean 'running'?) {STATUSES}"
    )
    assert refused(api, {"status": "in(failed,)"}) == (
        f"status: '' is not a value of status {STATUSES}"
    )
    both = listed(api, [("status", "in(failed,running,null)")])
    assert both == sorted(ids("failed") + ids("running")) != []


def test_a_value_in_ne_is_refused_and_ne_null_still_works(api: tuple[TestClient, dict]) -> None:
    assert refused(api, {"status": "ne(fialed)"}) == (
        f"status: 'fialed' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )
    every = sorted(doc["_id"] for doc in PROD_DOCS)
    assert listed(api, [("status", "ne(null)")]) == every
    assert listed(api, [("status", "null")]) == []
    assert listed(api, [("status", "ne(failed)")]) == sorted(set(every) - set(ids("failed")))


def test_a_comparisons_bound_must_be_in_the_set(api: tuple[TestClient, dict]) -> None:
    """`gt`, `range` and the expression's comparisons take values of the set (ordered as text)."""
    assert refused(api, {"status": "gt(fialed)"}).startswith("status: 'fialed' is not a value")
    assert refused(api, {"status": "range(failed,sucess)"}) == (
        f"status: 'sucess' is not a value of status (did you mean 'success'?) {STATUSES}"
    )
    assert refused(api, {"_filter": "status>=fialed"}).startswith("_filter: 'fialed' is not a")
    assert listed(api, [("status", "range(running,success)")]) == sorted(
        ids("running") + ids("success")
    )


def test_a_value_in_a_filter_expression_is_refused(api: tuple[TestClient, dict]) -> None:
    assert refused(api, {"_filter": "(status=failed or status=runing) and name=ECB_FX"}) == (
        f"_filter: 'runing' is not a value of status (did you mean 'running'?) {STATUSES}"
    )
    assert refused(api, {"_filter": "not status!='FAILED'"}) == (
        f"_filter: 'FAILED' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )
    assert refused(api, {"_filter": "status=in(failed,fialed)"}).startswith(
        "_filter: 'fialed' is not a value of status"
    )
    expected = sorted(ids("failed", name="ECB_FX") + ids("running", name="ECB_FX"))
    got = listed(api, [("_filter", "(status=failed or status=running) and name=ECB_FX")])
    assert got == expected != []
    assert listed(api, [("_filter", "status!=null and status=failed")]) == ids("failed")


@pytest.mark.parametrize(
    "spec",
    [
        {"status": "fialed"},
        {"status": {"$eq": "fialed"}},
        {"status": {"$ne": "fialed"}},
        {"status": {"$in": ["failed", "fialed"]}},
        {"status": {"$nin": ["fialed"]}},
        {"status": {"$not": {"$in": ["fialed"]}}},
        {"status": {"$gte": "fialed"}},
        {"$or": [{"name": "ECB_FX"}, {"$and": [{"status": "fialed"}]}]},
    ],
)
def test_a_value_in_a_json_filter_is_refused(
    api: tuple[TestClient, dict], spec: dict[str, Any]
) -> None:
    assert refused(api, {"_filter": json.dumps(spec)}) == (
        f"_filter: 'fialed' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )


def test_a_json_filter_takes_the_sets_values_and_null(api: tuple[TestClient, dict]) -> None:
    assert refused(api, {"_filter": '{status: "FAILED"}'}) == (  # the relaxed form
        f"_filter: 'FAILED' is not a value of status (did you mean 'failed'?) {STATUSES}"
    )
    assert refused(api, {"_filter": '{"status": 3}'}) == (
        f"_filter: 3 is not a value of status {STATUSES}"
    )
    spec = {"status": {"$in": ["failed", "running", None]}, "trigger": {"$ne": None}}
    assert listed(api, [("_filter", json.dumps(spec))]) == sorted(ids("failed") + ids("running"))
    assert listed(api, [("_filter", '{"status": {"$nin": ["failed"], "$eq": "success"}}')]) == (
        ids("success")
    )


def test_trigger_and_the_status_of_a_phase_are_closed_sets(api: tuple[TestClient, dict]) -> None:
    assert (
        refused(api, {"trigger": "cron"}) == f"trigger: 'cron' is not a value of trigger {TRIGGERS}"
    )
    assert refused(api, {"phases.status": "succes"}) == (
        f"phases.status: 'succes' is not a value of phases.status (did you mean 'success'?) "
        f"{PHASE_STATUSES}"
    )
    assert refused(api, {"_filter": '{"phases.0.status": {"$in": ["ok"]}}'}) == (
        f"_filter: 'ok' is not a value of phases.0.status {PHASE_STATUSES}"
    )
    # a phase is never `triggered`: that is an execution's status
    assert refused(api, {"phases.status": "triggered"}).startswith(
        "phases.status: 'triggered' is not a value of phases.status"
    )
    failed_phase = sorted(
        doc["_id"] for doc in PROD_DOCS if any(p["status"] == "failed" for p in doc["phases"])
    )
    assert listed(api, [("phases.status", "failed")]) == failed_phase != []


def test_a_value_in_an_aggregate_match_is_refused(api: tuple[TestClient, dict]) -> None:
    pipeline = [{"$match": {"status": {"$in": ["FAILED"]}}}, {"$count": "n"}]
    assert refused(api, {"_aggregate": json.dumps(pipeline)}) == (
        "_aggregate: stage 1 ($match): 'FAILED' is not a value of status (did you mean "
        f"'failed'?) {STATUSES}"
    )
    # after the group, `$match` reads the groups' fields, which hold no closed set
    client, headers = api
    grouped = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}, {"$match": {"_id": "FAILED"}}]
    response = client.get(URL, params={"_aggregate": json.dumps(grouped)}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


def test_a_pattern_or_a_presence_test_stays_allowed(api: tuple[TestClient, dict]) -> None:
    """A regular expression matches values: it is no value of the set itself."""
    assert listed(api, [("status", "regex(^FAIL)")]) == []
    assert listed(api, [("status", "regex((?i)^FAIL)")]) == ids("failed")
    assert listed(api, [("_filter", "{status: /^FAIL/i}")]) == ids("failed")
    assert listed(api, [("_filter", '{"trigger": {"$exists": true, "$regex": "^man"}}')]) == (
        sorted(doc["_id"] for doc in PROD_DOCS if doc["trigger"] == "manual")
    )


def test_a_long_value_is_echoed_in_short(api: tuple[TestClient, dict]) -> None:
    message = refused(api, {"status": "x" * 5000})
    assert message == f"status: '{'x' * 80}…' is not a value of status {STATUSES}"


def test_the_sets_are_the_domains_words() -> None:
    """One definition: the enums of `engine.domain`, as the stored documents hold them."""
    assert {
        "trigger": tuple(Trigger),
        "status": tuple(Status),
        "phases.status": tuple(PhaseStatus),
    } == CLOSED_FIELDS
    assert all(type(value) is str for values in CLOSED_FIELDS.values() for value in values)
