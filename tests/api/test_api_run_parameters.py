"""A run's parameters, for a reader who asks (`_params=true` on a read of one execution): the
parameters it was triggered with, secrets masked; the default document, and the list call,
unchanged; a run of a process the service no longer knows shows none of its values."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, Service
from tests.api.test_api_parameters import GIVEN, keyed

MASK = "**********"


def _triggered(client: TestClient, service: Service) -> str:
    keyed(service)
    body = {"name": "KEYED", "body": {"who": "carol-visible", "api_key": GIVEN}}
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, json=body)
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["_id"]
    return execution_id


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", ["v1/{id}", "v1/private/{id}", "v1/all/{id}"])
def test_the_parameters_come_masked_when_asked(
    client: TestClient, service: Service, base: str, path: str
) -> None:
    execution_id = _triggered(client, service)
    url = f"{base}/{path.format(id=execution_id)}"
    plain = client.get(url, headers=service.read_headers)
    asked = client.get(f"{url}?_params=true", headers=service.read_headers)
    assert plain.status_code == 200 and asked.status_code == 200, asked.text
    assert "parameters" not in plain.json()
    assert asked.json() == {**plain.json(), "parameters": {"who": "carol-visible", "api_key": MASK}}
    assert GIVEN not in asked.text
    assert (
        "parameters" not in client.get(f"{url}?_params=false", headers=service.read_headers).json()
    )


def test_the_parameters_follow_a_projection(client: TestClient, service: Service) -> None:
    execution_id = _triggered(client, service)
    url = f"{BASES[0]}/v1/{execution_id}?_project=name&_params=true"
    answer = client.get(url, headers=service.read_headers).json()
    assert answer == {"_id": execution_id, "name": "KEYED", "parameters": answer["parameters"]}
    assert answer["parameters"]["api_key"] == MASK


def test_an_unknown_process_shows_no_value(client: TestClient, service: Service) -> None:
    execution_id = _triggered(client, service)
    service.registry._processes.pop("KEYED")  # the definition is gone since the run
    url = f"{BASES[0]}/v1/{execution_id}?_params=true"
    answer = client.get(url, headers=service.read_headers)
    assert answer.status_code == 200
    assert answer.json()["parameters"] == {"who": MASK, "api_key": MASK}
    assert "carol-visible" not in answer.text and GIVEN not in answer.text


@pytest.mark.parametrize("value", ["yes", "", "1", "TRUE "])
def test_a_value_other_than_true_or_false_is_a_400(
    client: TestClient, service: Service, value: str
) -> None:
    execution_id = _triggered(client, service)
    url = f"{BASES[0]}/v1/{execution_id}"
    answer = client.get(url, params={"_params": value}, headers=service.read_headers)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("_params: ")


def test_the_list_call_takes_no_params(client: TestClient, service: Service) -> None:
    _triggered(client, service)
    for url in (f"{BASES[0]}/v1", f"{BASES[0]}/v1/private"):
        answer = client.get(url, params={"_params": "true"}, headers=service.read_headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("_params: unknown query parameter")
