"""The time limit of API reads (`PROCEXEC_READ_TIMEOUT_SECONDS`), over HTTP: a read past it
answers 503 with a message naming the limit, in the body and in `x-odsl-error`; the store then
answers as before, with no transaction left open; writes have no limit.

The slow reads are slow by their volume: a real store of `tests.volume.EXECUTIONS` executions,
each read whole (a general `_aggregate`, `_fieldinfo` through the phases, a regular expression
over every log line).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from procexec.engine.settings import Settings
from tests.api.api_helpers import BASES, Dispatcher, Service, start_service
from tests.volume import EXECUTIONS, SLOW_AGGREGATE, SLOW_FIELDINFO, SLOW_FILTER

#: far below what a read of every execution takes, far above what a read of a few does
LIMIT = "0.01"
MESSAGE = (
    "query took longer than 0.01 s (PROCEXEC_READ_TIMEOUT_SECONDS); "
    "narrow the filters or add start=range(...)"
)
SLOW = [
    pytest.param({"_aggregate": SLOW_AGGREGATE}, "application/json", id="aggregate"),
    pytest.param({"_fieldinfo": SLOW_FIELDINFO}, "application/json", id="fieldinfo"),
    pytest.param({"_distinct": "phases.status", **dict([SLOW_FILTER])}, None, id="distinct"),
    pytest.param(dict([SLOW_FILTER]), "application/json", id="filter"),
    pytest.param(dict([SLOW_FILTER]), "text/csv", id="filter-csv"),
]


@pytest.fixture
def limited(tmp_path: Path, volume: Path, dispatcher: Dispatcher) -> Iterator[Service]:
    """The app over a copy of the volume, its reads limited to `LIMIT` seconds."""
    shutil.copy(volume, tmp_path / "procexec.db")
    settings = Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_READ_TIMEOUT_SECONDS": LIMIT}
    )
    assert settings.read_timeout == 0.01
    service = start_service(settings, dispatcher)
    yield service
    service.store.close()


@pytest.fixture
def client(limited: Service) -> Iterator[TestClient]:
    with TestClient(limited.app) as test_client:
        yield test_client


def assert_timed_out(response: httpx2.Response) -> None:
    """A 503 naming the limit, in the body and the header; no `Retry-After`, since the same
    query would be stopped again."""
    assert response.status_code == 503, response.text
    assert response.json() == {"error": MESSAGE, "status": 503}
    assert response.headers["x-odsl-error"] == MESSAGE
    assert "retry-after" not in response.headers


def no_read_left_open(service: Service) -> bool:
    """Whether no connection of the app holds a read transaction: a write, then a checkpoint
    that must wait for every reader of the log to finish (and, waiting for none, tells)."""
    with sqlite3.connect(service.db_path, timeout=0, isolation_level=None) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")  # the test's own
        conn.execute("INSERT INTO probe VALUES (1)")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


@pytest.mark.parametrize(("params", "accept"), SLOW)
def test_a_read_past_the_limit_answers_503_naming_the_limit(
    client: TestClient, limited: Service, params: dict[str, str], accept: str | None
) -> None:
    headers = {**limited.read_headers, **({"Accept": accept} if accept else {})}
    for base in BASES:
        assert_timed_out(client.get(f"{base}/v1", params=params, headers=headers))


def test_a_read_past_the_limit_is_logged_as_a_warning_naming_the_query(
    client: TestClient, limited: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """The query's breadth stopped it, not a fault of the service: a warning, which says
    which query (an operator looks for it), and no error."""
    with caplog.at_level(logging.INFO):
        response = client.get(
            f"{BASES[0]}/v1", params={"_fieldinfo": SLOW_FIELDINFO}, headers=limited.read_headers
        )
    assert_timed_out(response)
    stopped = [record for record in caplog.records if record.getMessage().startswith("read")]
    assert [record.levelno for record in stopped] == [logging.WARNING]
    assert stopped[0].getMessage().startswith(f"read stopped: GET {BASES[0]}/v1?_fieldinfo=")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_read_past_the_limit_in_xml(client: TestClient, limited: Service) -> None:
    headers = {**limited.read_headers, "Accept": "application/xml"}
    response = client.get(f"{BASES[0]}/v1", params={"_aggregate": SLOW_AGGREGATE}, headers=headers)
    assert response.status_code == 503
    assert response.headers["x-odsl-error"] == MESSAGE
    assert MESSAGE in response.text and 'status="503"' in response.text


def test_a_list_query_that_overran_the_loops_budget_is_limited_in_its_thread(
    client: TestClient, limited: Service
) -> None:
    """Tried on the event loop under its 2 ms budget, the query overran it and went to a worker
    thread (and is remembered as one that overran): there the limit stopped it."""
    state = limited.app.state.procexec
    assert not state.overran
    assert_timed_out(
        client.get(f"{BASES[0]}/v1", params=dict([SLOW_FILTER]), headers=limited.read_headers)
    )
    assert len(state.overran) == 1


def test_after_a_stopped_read_the_store_answers_as_usual(
    client: TestClient, limited: Service
) -> None:
    url, headers = f"{BASES[0]}/v1", limited.read_headers
    for params in SLOW:
        query, accept = params.values
        assert_timed_out(
            client.get(url, params=query, headers={**headers, "Accept": accept or "*/*"})
        )
    # reads of a few rows, still under the limit, in the worker threads the stopped ones ran in
    assert client.get(url, params={"_distinct": "status"}, headers=headers).json() == [
        "failed",
        "success",
    ]
    buckets = client.get(url, params={"_fieldinfo": "name"}, headers=headers).json()
    assert sum(bucket["count"] for bucket in buckets) == EXECUTIONS
    page = client.get(url, params={"_limit": "1", "name": "DEMO"}, headers=headers)
    assert page.status_code == 200 and page.headers["x-total-count"] == str(EXECUTIONS // 3)
    one = client.get(f"{url}/v000042", headers=headers)
    assert one.status_code == 200 and one.json()["_id"] == "v000042"
    assert no_read_left_open(limited)
    # and the slow reads themselves, once the limit is lifted
    state = limited.app.state.procexec
    state.settings = state.settings.model_copy(update={"read_timeout": None})
    grouped = client.get(url, params={"_aggregate": SLOW_AGGREGATE}, headers=headers)
    assert grouped.status_code == 200
    assert sum(row["n"] for row in grouped.json()) == EXECUTIONS
    nothing = client.get(url, params=dict([SLOW_FILTER]), headers=headers)
    assert nothing.status_code == 200 and nothing.json() == []
    assert no_read_left_open(limited)


def test_writes_have_no_limit(client: TestClient, limited: Service) -> None:
    """A trigger, under the same limit, right after a stopped read: written, then served."""
    assert_timed_out(
        client.get(
            f"{BASES[0]}/v1", params={"_aggregate": SLOW_AGGREGATE}, headers=limited.read_headers
        )
    )
    created = client.post(f"{BASES[0]}/v1", json={"name": "DEMO"}, headers=limited.run_headers)
    assert created.status_code == 202, created.text
    execution_id = created.json()["_id"]
    assert limited.dispatcher.calls == [(execution_id, 0.0)]
    assert client.get(f"{BASES[0]}/v1/{execution_id}", headers=limited.read_headers).is_success
    assert limited.count() == EXECUTIONS + 1
