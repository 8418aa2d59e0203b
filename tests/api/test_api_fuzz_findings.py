"""What fuzzing the API found (`test_api_fuzz.py`, and probes beyond what its description lets
schemathesis generate), each pinned by a plain request: a refusal with a status and a message
naming what was wrong, never a 5xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, Service
from tests.api.test_api_errors import assert_refused

# --- a 405 names in `Allow` every method served on its path ---------------------------------


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1", "GET, HEAD, POST"),  # GET is a plain Starlette route, POST FastAPI's
        ("OPTIONS", "", "GET, POST"),  # build information, and the SDK's trigger
        ("DELETE", "/v1/ecb-1/cancel", "GET, POST"),  # also `v1/{source}/{execution_id}`
    ],
)
def test_a_405_allows_every_method_of_its_path(
    client: TestClient, service: Service, base: str, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, f"{base}{path}", headers=service.run_headers)
    assert_refused(response, service, 405, f"method {method} is not allowed on {base}{path}")
    assert response.headers["allow"] == allowed


def test_a_405_on_a_process_allows_put_and_post(client: TestClient, service: Service) -> None:
    path = "/service/process/v1/DEMO/schedule"
    response = client.get(path, headers=service.run_headers)
    assert_refused(response, service, 405, f"method GET is not allowed on {path}")
    assert response.headers["allow"] == "POST, PUT"


# --- JSON bodies: refused at the parse, not after (a 500 once the run was stored) ----------

BIG = "1" + "0" * 5000  # more digits than Python converts to an int


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        # the run was stored and dispatched, then its answer could not be encoded as UTF-8
        (
            b'{"name": "DEMO", "_reason": "\\ud800"}',
            "request body: '\\ud800' is a lone surrogate, not a character",
        ),
        (b'{"name": "\\udfff"}', "request body: '\\udfff' is a lone surrogate, not a character"),
        (
            b'{"name": "DEMO", "body": {"k\\udbff": [1, "a\\ud800"]}}',
            "request body: '\\ud800' is a lone surrogate, not a character",
        ),
        (
            f'{{"name": "DEMO", "_delay": {BIG}}}'.encode(),
            "request body: a number of more than 4300 digits",
        ),
    ],
)
def test_bad_trigger_bodies_are_400(
    client: TestClient, service: Service, base: str, content: bytes, message: str
) -> None:
    response = client.post(f"{base}/v1", headers=service.run_headers, content=content)
    assert_refused(response, service, 400, message)


def test_a_surrogate_pair_is_one_character(client: TestClient, service: Service) -> None:
    body = b'{"name": "DEMO", "_reason": "\\ud83d\\ude00"}'
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, content=body)
    assert response.status_code == 202, response.text
    assert response.json()["reason"] == "\N{GRINNING FACE}"


@pytest.mark.parametrize("delay", ["1" + "0" * 400, "-" + "9" * 4000])
def test_a_delay_past_the_largest_float_is_out_of_range(
    client: TestClient, service: Service, delay: str
) -> None:
    body = f'{{"name": "DEMO", "_delay": {delay}}}'.encode()
    response = client.post(f"{BASES[0]}/v1", headers=service.run_headers, content=body)
    assert_refused(response, service, 400, "_delay: must be between 0 and 86400000 milliseconds")


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000, "request body: malformed JSON: nested too deeply"),
        (
            b'{"schedule": "\\ud800"}',
            "request body: '\\ud800' is a lone surrogate, not a character",
        ),
        (
            b'{"schedule": "0 7 * * *", "timezone": "Europe/\\udc00"}',
            "request body: '\\udc00' is a lone surrogate, not a character",
        ),
        (f'{{"schedule": {BIG}}}'.encode(), "request body: a number of more than 4300 digits"),
    ],
)
def test_bad_schedule_bodies_are_400(
    client: TestClient, service: Service, method: str, content: bytes, message: str
) -> None:
    path = "/service/process/v1/DEMO/schedule"
    response = client.request(method, path, headers=service.run_headers, content=content)
    assert_refused(response, service, 400, message)
    process = client.get("/service/process/v1/DEMO", headers=service.read_headers).json()
    assert process["schedule"] is None
