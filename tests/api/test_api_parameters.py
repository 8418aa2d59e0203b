"""A process's typed parameters through HTTP: a trigger's body refused with a 400 naming each
field (in the JSON body and in `x-odsl-error`), nothing recorded and nothing dispatched; what
pydantic's lax mode converts recorded converted; the process list's `parameters` (JSON Schema)
and `defaults`; and a secret parameter neither echoed in a 400 nor shown in the list."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, SecretStr

from procexec.api.errors import error_header
from procexec.engine.process import Process
from tests.api.api_helpers import BASES, Service

PROCESS_BASES = ("/service/process", "/api/process")
SECRET = "s3cr3t-default-key"
GIVEN = "0ther-s3cr3t"


def refused(response: httpx2.Response, service: Service, before: int) -> str:
    """The 400's message, the same in the body and the header; nothing recorded or sent."""
    assert response.status_code == 400, response.text
    message: str = response.json()["error"]
    assert response.json() == {"error": message, "status": 400}
    assert response.headers["x-odsl-error"] == error_header(message)  # non-ASCII escaped
    assert service.count() == before
    assert service.dispatcher.calls == []
    return message


def post(client: TestClient, service: Service, payload: Any, base: str = BASES[0]) -> Any:
    return client.post(f"{base}/v1", headers=service.run_headers, json=payload)


@pytest.mark.parametrize("base", BASES)
def test_a_misspelt_parameter_is_named(client: TestClient, service: Service, base: str) -> None:
    message = refused(
        post(client, service, {"name": "DEMO", "body": {"slep": 1}}, base), service, 0
    )
    assert message == (
        "body.slep: unknown parameter (did you mean 'sleep'?); "
        "DEMO takes fail_in, fail_times, guard, log_lines, sleep"
    )


def test_a_misspelt_trigger_key_is_named(client: TestClient, service: Service) -> None:
    message = refused(post(client, service, {"name": "DEMO", "bdy": {}}), service, 0)
    assert message.startswith("bdy: not a key of a trigger; it takes name, body, input")


def test_a_fraction_for_an_integer_is_refused(client: TestClient, service: Service) -> None:
    message = refused(
        post(client, service, {"name": "DEMO", "body": {"log_lines": 1.5}}), service, 0
    )
    assert message == (
        "body.log_lines: Input should be a valid integer, got a number with a fractional part "
        "(got 1.5)"
    )


def test_the_string_of_a_number_is_the_number(client: TestClient, service: Service) -> None:
    response = post(client, service, {"name": "DEMO", "body": {"log_lines": "2", "sleep": "0"}})
    assert response.status_code == 202, response.text
    recorded = service.store.get_meta(response.json()["_id"])["input"]
    assert (recorded["log_lines"], recorded["sleep"]) == (2, 0)
    assert isinstance(recorded["log_lines"], int)


def test_every_bad_field_is_named(client: TestClient, service: Service) -> None:
    body = {"sleep": "fast", "log_lines": -1, "fail_in": "NOWHERE"}
    message = refused(post(client, service, {"name": "DEMO", "body": body}), service, 0)
    for name in ("body.sleep: ", "body.log_lines: ", "body.fail_in: "):
        assert name in message, message
    assert message.count("; ") == 2
    # unknown names are told first, each of them
    message = refused(
        post(client, service, {"name": "DEMO", "body": {"slep": 1, "logs": 2}}), service, 0
    )
    assert message.startswith("body.slep: unknown parameter") and "body.logs: unknown" in message


def test_a_long_unknown_name_is_echoed_in_part(client: TestClient, service: Service) -> None:
    name = "x" * 5000
    message = refused(post(client, service, {"name": "DEMO", "body": {name: 1}}), service, 0)
    echoed = message.removeprefix("body.").split(":")[0]
    assert echoed == "x" * 80 + "…"
    assert len(message) < 200


def test_nothing_is_recorded_on_a_400_after_a_run_was(client: TestClient, service: Service) -> None:
    assert post(client, service, {"name": "DEMO"}).status_code == 202
    before, sent = service.count(), list(service.dispatcher.calls)
    for body in ({"slep": 1}, {"sleep": -1}, {"subscription": {}}, {"upstream": {}}, ["sleep"]):
        response = post(client, service, {"name": "DEMO", "body": body})
        assert response.status_code == 400, (body, response.text)
        assert service.count() == before and service.dispatcher.calls == sent


@pytest.mark.parametrize("key", ["subscription", "upstream"])
def test_the_service_keys_are_not_taken_from_a_caller(
    client: TestClient, service: Service, key: str
) -> None:
    message = refused(
        post(client, service, {"name": "ECB_FX_CROSS", "body": {key: {"series": {}}}}), service, 0
    )
    assert message.startswith(f"body.{key}: reserved; the service sets it")


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_the_process_list_gives_each_process_its_schema_and_defaults(
    client: TestClient, service: Service, base: str
) -> None:
    listed = {
        item["name"]: item for item in client.get(f"{base}/v1", headers=service.read_headers).json()
    }
    single = client.get(f"{base}/v1/DEMO", headers=service.read_headers).json()
    for demo in (listed["DEMO"], single):
        assert demo["defaults"] == {
            "sleep": 0,
            "fail_in": None,
            "log_lines": 1,
            "fail_times": None,
            "guard": None,
        }
        schema = demo["parameters"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["properties"]) == {"sleep", "fail_in", "log_lines", "fail_times", "guard"}
        assert schema["properties"]["log_lines"]["type"] == "integer"
        assert schema["properties"]["sleep"]["maximum"] == 600
    assert listed["ECB_FX_CROSS"]["parameters"]["properties"] == {}
    assert listed["ECB_FX_CROSS"]["defaults"] == {}
    assert set(listed["ECB_FX"]["defaults"]) == {"url", "timeout"}


# --- a secret parameter ---------------------------------------------------------------------


class KeyedParams(BaseModel):
    who: str = "world"
    api_key: SecretStr = Field(SecretStr(SECRET), min_length=8)


def keyed(service: Service) -> Process:
    process = Process("KEYED", params=KeyedParams)
    process.phase("EXTRACT")(lambda ctx, _: ctx.params.api_key.get_secret_value())
    service.registry.add(process)
    return process


@pytest.mark.parametrize("base", PROCESS_BASES)
def test_the_process_list_masks_a_secret_default(
    client: TestClient, service: Service, base: str
) -> None:
    keyed(service)
    listed = client.get(f"{base}/v1", headers=service.read_headers)
    single = client.get(f"{base}/v1/KEYED", headers=service.read_headers)
    for answer in (listed, single):
        assert answer.status_code == 200
        assert SECRET not in answer.text
    shown = single.json()
    assert shown["defaults"] == {"who": "world", "api_key": "**********"}
    assert shown["parameters"]["properties"]["api_key"]["writeOnly"] is True
    assert SECRET not in json.dumps(shown["parameters"])


@pytest.mark.parametrize("value", ["short", "", "x" * 7])
def test_a_refused_secret_is_not_echoed(client: TestClient, service: Service, value: str) -> None:
    keyed(service)
    response = post(client, service, {"name": "KEYED", "body": {"api_key": value}})
    message = refused(response, service, 0)
    assert message.startswith("body.api_key: Value should have at least 8 items")
    assert "(got" not in message
    if value:
        assert value not in response.text and value not in response.headers["x-odsl-error"]


def test_a_secret_given_is_recorded_for_the_worker_and_never_served(
    client: TestClient, service: Service
) -> None:
    keyed(service)
    response = post(client, service, {"name": "KEYED", "body": {"api_key": GIVEN}})
    assert response.status_code == 202, response.text
    execution_id = response.json()["_id"]
    assert service.store.get_meta(execution_id)["input"] == {"who": "world", "api_key": GIVEN}
    assert GIVEN not in response.text
    for url in (f"{BASES[0]}/v1/{execution_id}", f"{BASES[0]}/v1?name=KEYED"):
        read = client.get(url, headers=service.read_headers)
        assert read.status_code == 200 and GIVEN not in read.text


@pytest.mark.parametrize("key", ["body", "input", "_reason", "_delay"])
def test_a_null_for_a_key_of_the_trigger_is_refused(
    client: TestClient, service: Service, key: str
) -> None:
    """The description types each key (an object, a string, a number): null is none of them."""
    response = client.post(
        f"{BASES[0]}/v1", headers=service.run_headers, json={"name": "DEMO", key: None}
    )
    assert response.status_code == 400
    assert response.json()["error"] == f"{key}: null is not a value; leave {key} out instead"
    assert service.count() == 0


class Login(BaseModel):
    user: str = "bob"
    password: SecretStr = SecretStr(SECRET)


class SourceParams(BaseModel):
    login: Login = Login()
    days: int = 1


def test_a_nested_model_s_unknown_name_and_secret_are_refused_unechoed(
    client: TestClient, service: Service
) -> None:
    process = Process("SOURCE", params=SourceParams)
    process.phase("EXTRACT")(lambda ctx, _: None)
    service.registry.add(process)
    message = refused(
        post(client, service, {"name": "SOURCE", "body": {"login": {"usr": "al"}}}), service, 0
    )
    assert message == (
        "body.login.usr: unknown field (did you mean 'user'?); SOURCE takes days, login"
    )
    response = post(client, service, {"name": "SOURCE", "body": {"login": {"password": 27182818}}})
    message = refused(response, service, 0)
    assert message == "body.login.password: Input should be a valid string"
    assert "27182818" not in response.text
    listed = client.get("/service/process/v1/SOURCE", headers=service.read_headers).json()
    assert listed["parameters"]["$defs"]["Login"]["additionalProperties"] is False
