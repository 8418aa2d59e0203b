"""The platform's credential forms: Bearer, Basic user:key, and the x-odsl-email/key pair."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, READ_USER, RUN_USER, Service, basic


@pytest.mark.parametrize("base", BASES)
def test_basic_with_the_tokens_user_may_trigger(
    client: TestClient, service: Service, base: str
) -> None:
    response = client.post(
        f"{base}/v1", headers=basic(RUN_USER, service.run_token), json={"name": "DEMO"}
    )
    assert response.status_code == 202
    doc = response.json()
    assert doc["runAs"] == RUN_USER
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]
    assert service.count() == 1


@pytest.mark.parametrize("base", BASES)
def test_basic_with_another_user_is_401(client: TestClient, service: Service, base: str) -> None:
    response = client.post(
        f"{base}/v1", headers=basic("mallory", service.run_token), json={"name": "DEMO"}
    )
    assert response.status_code == 401
    message = "the key does not belong to user 'mallory'"
    assert response.json()["error"] == message
    assert response.headers["x-odsl-error"] == message
    assert service.count() == 0
    assert service.dispatcher.calls == []
    # reading is refused the same way
    listed = client.get(f"{base}/v1", headers=basic(RUN_USER, service.read_token))
    assert listed.status_code == 401
    assert listed.json()["error"] == f"the key does not belong to user '{RUN_USER}'"


@pytest.mark.parametrize("base", BASES)
def test_basic_with_a_bad_key_is_401(client: TestClient, service: Service, base: str) -> None:
    response = client.get(f"{base}/v1", headers=basic(RUN_USER, "pe_guess"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid token"
    assert response.headers["x-odsl-error"] == "invalid token"


@pytest.mark.parametrize("base", BASES)
def test_basic_read_token_reads_but_may_not_trigger(
    client: TestClient, service: Service, base: str
) -> None:
    headers = basic(READ_USER, service.read_token)
    listed = client.get(f"{base}/v1", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == []
    posted = client.post(f"{base}/v1", headers=headers, json={"name": "DEMO"})
    assert posted.status_code == 403
    assert posted.json()["error"] == "token scope 'read' does not allow 'run'"
    assert service.count() == 0
    assert service.dispatcher.calls == []


@pytest.mark.parametrize("base", BASES)
def test_email_and_key_headers_of_the_tokens_user_may_trigger(
    client: TestClient, service: Service, base: str
) -> None:
    headers = {"x-odsl-email": RUN_USER, "x-odsl-key": service.run_token}
    response = client.post(f"{base}/v1", headers=headers, json={"name": "ECB_FX"})
    assert response.status_code == 202
    doc = response.json()
    assert doc["runAs"] == RUN_USER
    assert service.dispatcher.calls == [(doc["_id"], 0.0)]
    fetched = client.get(f"{base}/v1/{doc['_id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == doc


@pytest.mark.parametrize("base", BASES)
def test_email_and_key_headers_of_another_user_are_401(
    client: TestClient, service: Service, base: str
) -> None:
    headers = {"x-odsl-email": READ_USER, "x-odsl-key": service.run_token}
    response = client.post(f"{base}/v1", headers=headers, json={"name": "DEMO"})
    assert response.status_code == 401
    message = f"the key does not belong to user '{READ_USER}'"
    assert response.json()["error"] == message
    assert response.headers["x-odsl-error"] == message
    assert service.count() == 0
    assert service.dispatcher.calls == []


def test_a_key_without_email_is_401(client: TestClient, service: Service) -> None:
    response = client.get(f"{BASES[0]}/v1", headers={"x-odsl-key": service.run_token})
    assert response.status_code == 401
    message = "x-odsl-email and x-odsl-key must be sent together"
    assert response.json()["error"] == message
    assert response.headers["x-odsl-error"] == message


def test_runas_is_the_token_user_and_no_body_may_claim_another(
    client: TestClient, service: Service
) -> None:
    for claim in ({"runAs": READ_USER}, {"body": {"runAs": READ_USER}}):
        refused = client.post(
            f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "DEMO", **claim}
        )
        assert refused.status_code == 400
        assert "runAs: " in refused.json()["error"]
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "DEMO"})
    assert response.status_code == 202
    doc = response.json()
    assert doc["runAs"] == RUN_USER
    assert service.store.get(doc["_id"])["runAs"] == RUN_USER
