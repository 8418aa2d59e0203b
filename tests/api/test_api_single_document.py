"""The calls that read one execution (`v1/{id}`, `v1/private/{id}`, on both mounts) are as
strict as the list call: `_project` picks the fields as it does on the list, and any other
parameter is a 400 of the list call's shape (with its suggestion), never a silent 200 with the
whole document."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.api_helpers import BASES, KNOWN, Service

#: every path that reads one execution, given its id
PATHS = [f"{base}/v1/{prefix}{{id}}" for base in BASES for prefix in ("", "private/", "all/")]
#: what a refused parameter of a single document lists
OPTIONS = " (options: _project, _params; one execution takes no filters)"
NEAR = " (did you mean '_project'?)"


def get(client: TestClient, service: Service, path: str, doc: dict[str, Any], params: Any) -> Any:
    return client.get(path.format(id=doc["_id"]), params=params, headers=service.read_headers)


def refused(
    client: TestClient, service: Service, path: str, doc: dict[str, Any], params: Any
) -> str:
    """The message of the 400, the same in the body and in `x-odsl-error`."""
    response = get(client, service, path, doc, params)
    assert response.status_code == 400, (path, params, response.status_code, response.text[:300])
    message: str = response.json()["error"]
    assert response.headers["x-odsl-error"] == message
    return message


@pytest.mark.parametrize("path", PATHS)
def test_project_is_honoured(
    client: TestClient, service: Service, corpus: list[dict[str, Any]], path: str
) -> None:
    doc = next(doc for doc in corpus if doc["phases"] and "data" in doc)
    kept = get(client, service, path, doc, {"_project": "name,status,phases.name"})
    assert kept.status_code == 200, kept.text
    phases = [{"name": phase["name"]} for phase in doc["phases"]]
    assert kept.json() == {"_id": doc["_id"], "name": doc["name"], "status": doc["status"],
                           "phases": phases}  # fmt: skip
    as_json = get(client, service, path, doc, {"_project": '{"name": 1}'})
    assert as_json.json() == {"_id": doc["_id"], "name": doc["name"]}
    dropped = get(client, service, path, doc, {"_project": "-phases,-data"}).json()
    assert dropped == {key: value for key, value in doc.items() if key not in ("phases", "data")}
    # the same projection as the list call's, for this execution
    listed = client.get(
        path.split("/v1/")[0] + "/v1",
        params={"_id": doc["_id"], "_project": "name,status,phases.name"},
        headers=service.read_headers,
    )
    assert listed.json() == [kept.json()]


@pytest.mark.parametrize("path", PATHS)
def test_project_is_honoured_in_csv_and_xml(
    client: TestClient, service: Service, corpus: list[dict[str, Any]], path: str
) -> None:
    doc = corpus[0]
    url = path.format(id=doc["_id"])
    headers = {**service.read_headers, "Accept": "text/csv"}
    csv = client.get(url, params={"_project": "name,status"}, headers=headers)
    assert csv.text.splitlines() == [
        "_id,name,status",
        f"{doc['_id']},{doc['name']},{doc['status']}",
    ]
    headers = {**service.read_headers, "Accept": "application/xml"}
    xml = client.get(url, params={"_project": "name"}, headers=headers)
    assert xml.text.endswith(
        f"<execution><_id>{doc['_id']}</_id><name>{doc['name']}</name></execution>"
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bogus": "1"}, "bogus: unknown query parameter" + OPTIONS),
        ({"_projet": "name"}, f"_projet: unknown query parameter{NEAR}{OPTIONS}"),
        ({"project": "name"}, f"project: unknown query parameter{NEAR}{OPTIONS}"),
        ({"_limit": "1"}, "_limit: unknown query parameter" + OPTIONS),
        ({"status": "failed"}, "status: unknown query parameter" + OPTIONS),
        ({"_project": "name,nope"}, "_project: 'nope' is not a field of an execution" + KNOWN),
        ({"_project": "name,-data"},
         "_project: list either fields to keep or fields to drop (-name)"),
    ],
)  # fmt: skip
def test_any_other_parameter_is_refused(
    client: TestClient,
    service: Service,
    corpus: list[dict[str, Any]],
    path: str,
    params: dict[str, str],
    message: str,
) -> None:
    assert refused(client, service, path, corpus[0], params) == message


@pytest.mark.parametrize("base", BASES)
def test_the_private_path_is_as_strict(
    client: TestClient, service: Service, corpus: list[dict[str, Any]], base: str
) -> None:
    """`v1/private/{id}` (a FastAPI route, not the fast path of `v1/{id}`) reads the same
    parameters; `v1/public/{id}` checks them too before it answers that nothing is public."""
    doc = corpus[0]
    private = f"{base}/v1/private/{{id}}"
    assert refused(client, service, private, doc, {"bogus": "1"}) == (
        "bogus: unknown query parameter" + OPTIONS
    )
    projected = get(client, service, private, doc, {"_project": "status"})
    assert projected.json() == {"_id": doc["_id"], "status": doc["status"]}
    public = f"{base}/v1/public/{{id}}"
    assert refused(client, service, public, doc, {"bogus": "1"}).startswith("bogus: unknown")
    assert get(client, service, public, doc, {"_project": "name"}).status_code == 404


def test_a_form_body_counts_as_on_the_list(
    client: TestClient, service: Service, corpus: list[dict[str, Any]]
) -> None:
    """A GET may carry its parameters in a form body, on one execution as on the list."""
    doc = corpus[0]
    headers = {**service.read_headers, "Content-Type": "application/x-www-form-urlencoded"}
    for path in (f"{BASES[0]}/v1/{doc['_id']}", f"{BASES[1]}/v1/private/{doc['_id']}"):
        response = client.request("GET", path, content="_project=name", headers=headers)
        assert response.json() == {"_id": doc["_id"], "name": doc["name"]}
        response = client.request("GET", path, content="stauts=failed", headers=headers)
        assert response.status_code == 400
        assert response.json()["error"] == "stauts: unknown query parameter" + OPTIONS


def test_the_token_is_checked_before_the_parameters(
    client: TestClient, service: Service, corpus: list[dict[str, Any]]
) -> None:
    for path in PATHS:
        response = client.get(path.format(id=corpus[0]["_id"]), params={"bogus": "1"})
        assert response.status_code == 401, (path, response.text)


def test_a_nul_in_a_parameter_is_refused(
    client: TestClient, service: Service, corpus: list[dict[str, Any]]
) -> None:
    for path in PATHS:
        message = refused(client, service, path, corpus[0], {"_project": "name\x00"})
        assert (
            message == "_project: a NUL character (\\x00) at position 4 of the value is not allowed"
        )
