"""The dashboard's page and files over plain HTTP: served from the package at `/` and under
`/dashboard`, with the security headers, a policy that lets no inline script run, and every
file the page loads present (and shipped: pyproject.toml's package-data names each of them).
The page itself, in a real browser: `test_dashboard_browser.py`."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from procexec.api.dashboard import FILES_PATH, PAGE_POLICY, web_files
from procexec.api.security_headers import API_POLICY

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "api" / "web"
SHARED = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


def _assert_shared_headers(headers: object) -> None:
    for name, value in SHARED.items():
        assert headers[name] == value, name  # type: ignore[index]
    assert headers["referrer-policy"] == "no-referrer"  # type: ignore[index]


def test_the_page_is_served_at_the_root_under_its_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    _assert_shared_headers(page.headers)
    policy = page.headers["content-security-policy"]
    assert policy == PAGE_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    # the page has no inline script, style or handler that the policy would refuse
    html = page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None
    assert client.head("/").status_code == 200


def _referenced(text: str) -> set[str]:
    """The files a page or a module loads: `src=`, `href=` of this folder, and imports."""
    found = set(re.findall(r'(?:src|href)="dashboard/([^"]+)"', text))
    found |= set(re.findall(r'from "\./([^"]+)"', text))
    return found


def test_every_file_the_page_loads_is_served_with_the_headers(client: TestClient) -> None:
    wanted = _referenced(client.get("/").text)
    seen: set[str] = set()
    while wanted - seen:
        name = sorted(wanted - seen)[0]
        seen.add(name)
        answer = client.get(f"{FILES_PATH}/{name}")
        assert answer.status_code == 200, name
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert answer.headers["content-type"].startswith(kind), (name, answer.headers)
        _assert_shared_headers(answer.headers)
        assert answer.headers["content-security-policy"] == API_POLICY
        assert answer.headers["cache-control"] == "no-cache"
        wanted |= _referenced(answer.text)
    # the page reaches every file of the folder, and nothing else is there
    assert {"main.js", "dashboard.css", "core.js", "list.js", "run.js", "stream.js"} <= seen
    assert seen == {path.name for path in WEB.iterdir()} - {"index.html"}


def test_a_missing_file_is_a_404_with_the_headers(client: TestClient) -> None:
    answer = client.get(f"{FILES_PATH}/nope.js")
    assert answer.status_code == 404
    _assert_shared_headers(answer.headers)
    assert client.get(f"{FILES_PATH}/../dashboard.py").status_code == 404


@pytest.mark.parametrize("path", sorted(WEB.glob("*.js")), ids=lambda path: path.name)
def test_the_scripts_never_read_text_as_html_nor_evaluate_it(path: Path) -> None:
    """What the API returns (names, messages, log lines) is shown as text, never parsed."""
    source = path.read_text()
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert banned not in source, f"{path.name} uses {banned}"
    assert "new Function" not in source
    assert len(source.splitlines()) <= 400, f"{path.name}: split it"


def test_the_package_data_ships_every_file_of_the_dashboard() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "procexec.api.web" in config["packages"]
    patterns = config["package-data"]["procexec.api.web"]
    files = [path.name for path in WEB.iterdir()]
    unshipped = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert files and unshipped == []
    assert web_files().resolve() == WEB.resolve()  # the tree's own folder, installed
