"""`/docs` in a real browser: Debian's Chromium, driven by Playwright, against the API served by
a real uvicorn process. Swagger UI renders every operation of `/openapi.json` under the page's
Content-Security-Policy, with no violation in the console, and no request leaves 127.0.0.1
(its files come from the package, not a CDN).

Playwright drives `/usr/bin/chromium` (Debian's package `chromium`; no browser download).
Without it the test skips, unless `PROCEXEC_REQUIRE_BROWSER=1` (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
#: Chromium's flags here: headless, no sandbox (root), and none of its own calls home
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: generous bounds: they detect a hang, they time nothing
START_SECONDS = 60
PAGE_MS = 60_000


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The app factory served by a real uvicorn process on 127.0.0.1; stopped afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PROCEXEC_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "procexec.api.app:app_factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log = (tmp_path / "uvicorn.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        (tmp_path / "uvicorn.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def read_token(tmp_path: Path) -> str:
    """A `read` token of the served API's store (`procexec token create`)."""
    env = {**os.environ, "PROCEXEC_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "procexec.cli", "token", "create", "--user", "admin"]
    result = subprocess.run(
        [*command, "--scope", "read"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


#: the list call, as Swagger UI shows it
LIST_PATH = "/service/process-exec/v1"


def test_swagger_ui_renders_every_operation_under_its_policy_offline(
    api_url: str, read_token: str
) -> None:
    missing = _browser_missing()
    if missing:
        if os.environ.get("PROCEXEC_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with urllib.request.urlopen(f"{api_url}/openapi.json", timeout=30) as response:
        schema = json.load(response)
    operations = sum(len(methods) for methods in schema["paths"].values())

    requests: list[str] = []
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
            # what the page's policy refuses, as the page itself sees it
            page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation', e => "
                "window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            answer = page.goto(f"{api_url}/docs", wait_until="networkidle", timeout=PAGE_MS)
            assert answer is not None and answer.status == 200
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
            page.wait_for_selector(".opblock", timeout=PAGE_MS)
            assert page.locator(".opblock").count() == operations
            # an operation opens, as a person would click it
            page.locator(".opblock-summary").first.click()
            page.wait_for_selector(".opblock-body", timeout=PAGE_MS)
            # each process's parameters are among the schemas the page lists
            page.wait_for_selector("section.models", timeout=PAGE_MS)
            models = page.locator("section.models").all_inner_texts()
            # Authorize with a bearer token, then "Try it out" on the list call: a 200
            page.locator("button.authorize").first.click()
            bearer = page.locator(".modal-ux .auth-container").filter(has_text="bearerToken")
            bearer.locator("input").fill(read_token)
            bearer.locator("button.authorize").click()
            bearer.locator("button.btn-done").click()
            listing = page.locator(".opblock-get").filter(
                has=page.locator(f".opblock-summary-path[data-path='{LIST_PATH}']")
            )
            listing.locator(".opblock-summary").click()
            listing.locator("button.try-out__btn").click()
            listing.locator("button.execute").click()
            status = listing.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for(timeout=PAGE_MS)
            answered = status.inner_text().strip()
            violations = page.evaluate("window.__violations")
        finally:
            browser.close()

    listed = {line.split()[0].removesuffix("Expand") for line in models[0].splitlines() if line}
    assert {"DEMO.parameters", "ECB_FX.parameters", "Execution"} <= listed, listed
    assert answered == "200", answered
    assert violations == [], violations
    refused = [line for line in console if "Content Security Policy" in line or "Refused" in line]
    assert refused == [], refused
    assert not [line for line in console if line.startswith(("error", "pageerror"))], console
    hosts = {urlsplit(url).hostname for url in requests if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requests
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in requests)
