"""What fuzzing the API found (`test_api_fuzz.py`, and probes beyond what its description lets
schemathesis generate), each pinned by a plain request: a refusal with a status and a message
naming what was wrong, never a 5xx."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from typing import Any

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
        ("DELETE", "/v1/ecb-1/cancel", "POST"),  # `v1/{source}/…` takes sources alone
        ("GET", "/v1/ecb-1/cancel", "POST"),
        ("OPTIONS", "/v1/ecb-1/cancel", "POST"),
        ("DELETE", "/v1/private/ecb-1", "GET"),
        ("DELETE", "/v1/private/cancel", "GET, POST"),  # one execution, or the cancel of one
    ],
)
def test_a_405_allows_every_method_of_its_path(
    client: TestClient, service: Service, base: str, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, f"{base}{path}", headers=service.run_headers)
    assert_refused(response, service, 405, f"method {method} is not allowed on {base}{path}")
    assert response.headers["allow"] == allowed


#: a value of each path parameter of the description
PATH_VALUES = {"key": "ecb-1", "execution_id": "ecb-1", "source": "private", "name": "DEMO"}


def _template(path: str, operations: dict[str, Any]) -> re.Pattern[str]:
    """The paths a described path stands for: its parameters' enums, or any segment."""
    patterns = {}
    for operation in operations.values():
        for parameter in operation.get("parameters", []):
            enum = parameter.get("schema", {}).get("enum")
            if parameter["in"] == "path":
                patterns[parameter["name"]] = "|".join(map(re.escape, enum)) if enum else "[^/]+"
    parts = re.split(r"\{(\w+)\}", path)
    return re.compile(
        "".join(
            re.escape(part) if n % 2 == 0 else f"({patterns[part]})" for n, part in enumerate(parts)
        )
    )


def test_every_405_allows_the_described_methods_of_its_path(
    client: TestClient, service: Service
) -> None:
    """Each described path, its parameters filled in, answers an unrouted method with a 405
    whose `Allow` names the methods the description gives every path that matches it (HEAD
    aside: Starlette serves it beside a GET)."""
    paths = client.get("/openapi.json").json()["paths"]
    templates = {path: _template(path, operations) for path, operations in paths.items()}
    for path in paths:
        url = re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match[1]], path)
        described = {
            method.upper()
            for other, operations in paths.items()
            if templates[other].fullmatch(url)
            for method in operations
        }
        response = client.request("PATCH", url, headers=service.admin_headers)
        assert response.status_code == 405, url
        allowed = set(response.headers["allow"].split(", ")) - {"HEAD"}
        assert allowed == described, url


def test_the_source_is_described_as_its_three_values(client: TestClient, service: Service) -> None:
    """`v1/{source}/{execution_id}` is routed for the three sources alone, as described."""
    paths = client.get("/openapi.json").json()["paths"]
    (source,) = paths["/service/process-exec/v1/{source}/{execution_id}"]["get"]["parameters"][:1]
    assert source["schema"]["enum"] == ["private", "public", "all"]


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
    response = client.request(method, path, headers=service.admin_headers, content=content)
    assert_refused(response, service, 400, message)
    process = client.get("/service/process/v1/DEMO", headers=service.read_headers).json()
    assert process["schedule"] is None


# --- control characters in an error's header (escaped like non-ASCII ones) ----------------
# An id or a name the message repeats is an excerpt of it (`engine.errors.excerpt`), escaped
# in the JSON body as well, and so is a query value.


NO_AB = "no execution 'a\\x00b' in environment 'production'"


@pytest.mark.parametrize(
    ("path", "status", "message", "header"),
    [
        (
            "/service/process-exec/v1/a%00b",
            404,
            NO_AB,
            "no execution 'a\\x00b' in environment 'production'",
        ),
        ("/service/process/v1/%01", 404, "unknown process '\\x01'", "unknown process '\\x01'"),
        ("/service/process/v1/%7f", 404, "unknown process '\\x7f'", "unknown process '\\x7f'"),
        (
            "/service/process-exec/v1?_limit=%1b",
            400,
            "_limit: '\\x1b' is not a whole number",
            "_limit: '\\x1b' is not a whole number",
        ),
    ],
)
def test_control_characters_travel_escaped_in_the_header(
    client: TestClient, service: Service, path: str, status: int, message: str, header: str
) -> None:
    response = client.get(path, headers=service.run_headers)
    assert response.status_code == status
    assert response.json() == {"error": message, "status": status}
    assert response.headers["x-odsl-error"] == header


def test_a_nul_in_a_path_is_answered_by_a_real_server(live_url: str, service: Service) -> None:
    """uvicorn (h11) refused the NUL in the header and dropped the connection: no answer."""
    url = urllib.parse.urlsplit(live_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request("GET", "/service/process-exec/v1/a%00b", headers=service.run_headers)
        response = connection.getresponse()
        assert response.status == 404
        assert json.loads(response.read())["error"] == NO_AB
    finally:
        connection.close()


# --- a reschedule takes exactly what its description allows ---------------------------------


@pytest.mark.parametrize(
    ("schedule", "timezone"),
    [
        ("30 16 * * 1-5", None),
        ("*/15 0-6,22,23 1,15 jan-MAR,Dec sun-Fri/2", "Europe/London"),
        (" 5 4 * * 7 ", "UTC"),
        ("", None),  # described as a string, once refused by the route alone
        ("   ", None),
        ("0 0 0 * *", None),
        ("0 24 * * *", None),
        ("0 0 L * *", None),  # croniter's extensions are not offered
        ("0 0 * * 1#2", None),
        ("0 0 * * * *", None),
        ("0 0 * * 1\n", None),
        (None, "Mars/Olympus_Mons"),
        ("30 16 * * 1-5", ""),
    ],
)
def test_a_schedule_is_taken_when_the_description_allows_it(
    client: TestClient, service: Service, schedule: str | None, timezone: str | None
) -> None:
    """The route takes a body exactly when the description's schema does (pattern, enum)."""
    described = client.get("/openapi.json").json()["paths"]["/service/process/v1/{name}/schedule"]
    schema = described["put"]["requestBody"]["content"]["application/json"]["schema"]
    properties = schema["properties"]
    pattern = properties["schedule"]["pattern"]
    assert pattern.endswith("$")
    ecma = pattern.removesuffix("$") + r"\Z"  # JSON Schema's `$` is the end, never a last \n
    allowed = (schedule is None or re.search(ecma, schedule)) and (
        timezone is None or timezone in properties["timezone"]["anyOf"][0]["enum"]
    )
    body = {"schedule": schedule, "timezone": timezone}
    response = client.put(
        "/service/process/v1/DEMO/schedule", headers=service.admin_headers, json=body
    )
    assert response.status_code == (200 if allowed else 400), response.text
