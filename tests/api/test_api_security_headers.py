"""Security headers on every answer, and `/docs` served from the package under a nonce policy
(the page in a real browser: `test_api_docs_browser.py`)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procexec.api.security_headers import API_POLICY, STATIC_PATH, swagger_files
from tests.api.api_helpers import BASES, Service

V1 = f"{BASES[0]}/v1"


@pytest.mark.parametrize(
    ("method", "path", "params", "accept", "auth", "status"),
    [
        ("GET", V1, {}, "application/json", "read", 200),
        ("GET", V1, {}, "text/csv", "read", 200),
        ("GET", V1, {}, "application/xml", "read", 200),
        ("GET", V1, {"stauts": "failed"}, "application/json", "read", 400),
        ("GET", V1, {}, "application/json", None, 401),
        ("GET", f"{V1}/nope", {}, "application/json", "read", 404),
        ("GET", V1, {}, "image/png", "read", 406),
        ("DELETE", V1, {}, "application/json", "run", 405),
        ("GET", BASES[1], {}, "application/json", None, 200),
        ("GET", "/service/process/v1", {}, "application/json", "read", 200),
        ("GET", "/healthz", {}, "application/json", None, 200),
        ("GET", "/openapi.json", {}, "application/json", None, 200),
        ("GET", f"{STATIC_PATH}/swagger-ui-bundle.js", {}, "*/*", None, 200),
        ("GET", "/redoc", {}, "text/html", None, 404),  # off: it loads from a CDN
    ],
)
def test_every_answer_carries_the_headers(
    client: TestClient,
    service: Service,
    method: str,
    path: str,
    params: dict[str, str],
    accept: str,
    auth: str | None,
    status: int,
) -> None:
    headers: dict[str, Any] = {"Accept": accept}
    if auth:
        headers.update(service.read_headers if auth == "read" else service.run_headers)
    response = client.request(method, path, params=params, headers=headers)
    assert response.status_code == status, response.text[:200]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == API_POLICY


def test_the_docs_page_loads_only_from_this_origin_under_a_nonce(client: TestClient) -> None:
    pages = [client.get("/docs"), client.get("/docs")]
    nonces = []
    for page in pages:
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        policy = page.headers["content-security-policy"]
        (nonce,) = re.findall(r"'nonce-([A-Za-z0-9_-]{24})'", policy)
        nonces.append(nonce)
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        html = page.text
        # every script is the package's file or carries the nonce; nothing names another host
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts == [f'<script src="{STATIC_PATH}/swagger-ui-bundle.js">',
                           f'<script nonce="{nonce}">']  # fmt: skip
        assert not re.search(r"(https?:)?//[A-Za-z]", html.replace("window.location", ""))
        assert f'href="{STATIC_PATH}/swagger-ui.css"' in html
        assert '"validatorUrl": null' in html
    assert nonces[0] != nonces[1]  # one per page
    redirect = client.get("/docs/oauth2-redirect")
    (nonce,) = re.findall(r"'nonce-([^']+)'", redirect.headers["content-security-policy"])
    assert f'<script nonce="{nonce}">' in redirect.text


def test_swagger_uis_files_come_with_the_package(client: TestClient) -> None:
    folder = swagger_files()
    for name, kind in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"),
                       ("favicon.png", "image/png")]:  # fmt: skip
        response = client.get(f"{STATIC_PATH}/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        assert response.content == (folder / name).read_bytes()
