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
