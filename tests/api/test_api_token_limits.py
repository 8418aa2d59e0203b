"""A token limited to environments and processes, through the real app: every read path
(pages in JSON, CSV and XML, totals, `_distinct`, `_fieldinfo`, `_aggregate`, `_search`, a form
query, one execution, the process list) sees only what it may, and every write (trigger,
cancel) is refused outside its limits; revoked and expired tokens are 401."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.engine.timeutil import iso_ms
from procexec.engine.tokens import CACHE_SECONDS, create_token, hash_token, revoke
from tests.api.api_helpers import BASES, Service, bearer
from tests.engine.query_strategies import PROD

LIMIT = ("ECB_FX", "DEMO")
PROCESSES = ("/service/process", "/api/process")


@pytest.fixture
def limited(service: Service) -> dict[str, str]:
    token = create_token(service.store, "carol", "run", environments=[PROD], processes=list(LIMIT))
    return bearer(token)


def _allowed(corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    allowed = [doc for doc in corpus if doc["name"] in LIMIT]
    assert allowed and len(allowed) < len(corpus)  # the limit hides some
    return allowed


@pytest.mark.parametrize("path", ["/v1", "/v1/private", "/v1/all"])
def test_lists_and_totals_hold_to_the_limit(
    client: TestClient, corpus: list[dict[str, Any]], limited: dict[str, str], path: str
) -> None:
    allowed = _allowed(corpus)
    for base in BASES:
        url = f"{base}{path}"
        page = client.get(url, params={"_limit": "-1"}, headers=limited)
        assert page.status_code == 200, page.text
        assert {doc["_id"] for doc in page.json()} == {doc["_id"] for doc in allowed}
        assert page.headers["x-total-count"] == str(len(allowed))
        one = client.get(url, params={"_limit": "1"}, headers=limited)
        assert len(one.json()) == 1 and one.headers["x-total-count"] == str(len(allowed))
        for params in (
            {"name": "BOE_RATES"},
            {"name": "in(BOE_RATES,DEMO)"},
            {"_filter": "name=BOE_RATES or status=failed"},
            {"_filter": '{"name": {"$ne": "DEMO"}}'},
            {"_search": "Completed"},
            {"_id": "regex(.)"},
        ):
            answer = client.get(url, params={**params, "_limit": "-1"}, headers=limited)
            names = {doc["name"] for doc in answer.json()}
            assert names <= set(LIMIT), params
            assert answer.headers["x-total-count"] == str(len(answer.json())), params
        csv_page = client.get(
            url, params={"_limit": "-1"}, headers={**limited, "Accept": "text/csv"}
        )
        rows = list(csv.DictReader(io.StringIO(csv_page.text)))
        assert {row["name"] for row in rows} == {doc["name"] for doc in allowed}
        assert csv_page.headers["x-total-count"] == str(len(allowed))
        xml_page = client.get(
            url, params={"_limit": "-1"}, headers={**limited, "Accept": "application/xml"}
        )
        root = ET.fromstring(xml_page.text)
        assert root.get("total") == str(len(allowed))
        assert {item.findtext("name") for item in root} == {doc["name"] for doc in allowed}


def test_answers_built_from_counts_hold_to_the_limit(
    client: TestClient, corpus: list[dict[str, Any]], limited: dict[str, str]
) -> None:
    allowed = _allowed(corpus)
    names = {doc["name"] for doc in allowed}
    url = f"{BASES[0]}/v1"
    distinct = client.get(url, params={"_distinct": "name"}, headers=limited)
    assert set(distinct.json()) == names
    users = client.get(url, params={"_distinct": "runAs"}, headers=limited).json()
    assert set(users) == {doc["runAs"] for doc in allowed}
    buckets = client.get(url, params={"_fieldinfo": "name"}, headers=limited).json()
    assert {b["_id"] for b in buckets} == names
    assert sum(b["count"] for b in buckets) == len(allowed)
    statuses = client.get(url, params={"_fieldinfo": "status"}, headers=limited).json()
    assert sum(b["count"] for b in statuses) == len(allowed)
    pipeline = json.dumps([{"$group": {"_id": "$name", "n": {"$sum": 1}}}])
    results = client.get(url, params={"_aggregate": pipeline}, headers=limited).json()
    assert {r["_id"] for r in results} == names and sum(r["n"] for r in results) == len(allowed)
    csv_values = client.get(
        url, params={"_distinct": "name"}, headers={**limited, "Accept": "text/csv"}
    )
    assert set(csv_values.text.split()[1:]) == names
    form = client.request(
        "GET",
        url,
        content="_limit=-1&name=in(BOE_RATES,ECB_FX)",
        headers={**limited, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert {doc["name"] for doc in form.json()} == {"ECB_FX"}


def test_one_execution_outside_the_limit_is_404(
    client: TestClient, corpus: list[dict[str, Any]], limited: dict[str, str]
) -> None:
    inside = next(doc for doc in corpus if doc["name"] in LIMIT)
    outside = next(doc for doc in corpus if doc["name"] not in LIMIT)
    for base in BASES:
        for path in ("/v1/", "/v1/private/"):
            for accept in ("application/json", "text/csv", "application/xml"):
                headers = {**limited, "Accept": accept}
                seen = client.get(f"{base}{path}{inside['_id']}", headers=headers)
                assert seen.status_code == 200, seen.text
                hidden = client.get(f"{base}{path}{outside['_id']}", headers=headers)
                assert hidden.status_code == 404
                assert outside["name"] not in hidden.text
    doc = client.get(f"{BASES[0]}/v1/{inside['_id']}", headers=limited).json()
    assert doc["_id"] == inside["_id"]


def test_another_environment_is_403(
    client: TestClient, service: Service, corpus: list[dict[str, Any]], limited: dict[str, str]
) -> None:
    headers = {**limited, "x-odsl-environment": "staging"}
    message = "token limited to environment(s) production: not 'staging' (x-odsl-environment)"
    for base in BASES:
        for method, path, body in (
            ("GET", "/v1", None),
            ("GET", "/v1?_distinct=name", None),
            ("GET", "/v1/private", None),
            ("GET", "/v1/r000", None),
            ("GET", "/v1/private/r000", None),
            ("POST", "/v1", {"name": "DEMO"}),
            ("POST", "/v1/r000/cancel", None),
        ):
            response = client.request(method, f"{base}{path}", headers=headers, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"] == message
    assert service.dispatcher.calls == []


def test_writes_hold_to_the_limit(
    client: TestClient, service: Service, corpus: list[dict[str, Any]], limited: dict[str, str]
) -> None:
    before = service.count()
    refused = client.post(f"{BASES[0]}/v1", headers=limited, json={"name": "BOE_RATES"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "token limited to process(es) ECB_FX, DEMO: not 'BOE_RATES'"
    unknown = client.post(f"{BASES[0]}/v1", headers=limited, json={"name": "NOPE"})
    assert unknown.status_code == 403  # outside the limit, known or not
    assert service.count() == before and service.dispatcher.calls == []
    outside = next(
        doc
        for doc in corpus
        if doc["name"] not in LIMIT and doc["status"] in ("triggered", "running")
    )
    cancel = client.post(f"{BASES[0]}/v1/{outside['_id']}/cancel", headers=limited)
    assert cancel.status_code == 404
    assert service.store.get(outside["_id"])["status"] == outside["status"]  # unchanged
    allowed = client.post(f"{BASES[1]}/v1", headers=limited, json={"name": "DEMO"})
    assert allowed.status_code == 202, allowed.text
    assert allowed.json()["runAs"] == "carol"
    mine = allowed.json()["_id"]
    cancelled = client.post(f"{BASES[0]}/v1/{mine}/cancel", headers=limited)
    assert cancelled.status_code == 200, cancelled.text


def test_the_process_list_holds_to_the_limit(
    client: TestClient, service: Service, limited: dict[str, str]
) -> None:
    for base in PROCESSES:
        listed = client.get(f"{base}/v1", headers=limited)
        assert sorted(p["name"] for p in listed.json()) == sorted(LIMIT)
        assert client.get(f"{base}/v1/DEMO", headers=limited).status_code == 200
        hidden = client.get(f"{base}/v1/BOE_RATES", headers=limited)
        assert hidden.status_code == 404
        assert hidden.json()["error"] == "unknown process 'BOE_RATES'"
        full = client.get(f"{base}/v1", headers=service.read_headers).json()
        assert len(full) > len(LIMIT)


def test_revoked_and_expired_tokens_are_401(client: TestClient, service: Service) -> None:
    revoked = create_token(service.store, "dave", "admin")
    revoke(service.store, hash_token(revoked)[:12])
    past = iso_ms(datetime.now(UTC) - timedelta(seconds=1))
    expired = create_token(service.store, "erin", "read", expires=past)
    for token in (revoked, expired):
        for base in BASES:
            response = client.get(f"{base}/v1", headers=bearer(token))
            assert response.status_code == 401
            assert response.json()["error"] == "invalid token"
        response = client.get(f"{PROCESSES[0]}/v1", headers=bearer(token))
        assert response.status_code == 401


def test_a_trigger_takes_a_verified_token_on_trust_until_the_caches_ttl_then_refuses_it(
    client: TestClient, service: Service
) -> None:
    """The trigger (and the body check before it) take a token the cache verified without
    asking the store; revoked, it is refused once the cache's ttl (`CACHE_SECONDS`, 5 s by
    default) has passed."""
    now = [1000.0]
    cache = service.app.state.procexec.tokens  # the one cache of the routes and `BodyLimit`
    cache.clock = lambda: now[0]
    assert cache.ttl == CACHE_SECONDS == 5.0
    token = create_token(service.store, "frank", "run")
    trigger = {"name": "DEMO"}
    for base in BASES:
        assert client.post(f"{base}/v1", json=trigger, headers=bearer(token)).status_code == 202
    revoke(service.store, hash_token(token)[:12])
    now[0] += 4.0
    assert client.post(f"{BASES[0]}/v1", json=trigger, headers=bearer(token)).status_code == 202
    now[0] += 1.5
    for base in BASES:
        for path in (f"{base}/v1", base):
            response = client.post(path, json=trigger, headers=bearer(token))
            assert response.status_code == 401
            assert response.json()["error"] == "invalid token"


def test_a_token_in_the_query_string_is_not_taken(client: TestClient, service: Service) -> None:
    """Tokens travel in headers only (a URL is logged, kept in histories and proxies)."""
    for name in ("token", "access_token", "api_key", "key"):
        response = client.get(f"{BASES[0]}/v1", params={name: service.run_token})
        assert response.status_code == 401
        assert re.search(r"missing credentials", response.json()["error"])
