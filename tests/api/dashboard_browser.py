"""What the dashboard's browser tests (`test_dashboard_browser.py`) and its screenshots
(`docs/dashboard_screenshots.py`) share: a real `procexec standalone` (API, worker and beat on
the embedded store and broker) and Debian's Chromium driven by Playwright, launched as
`test_api_docs_browser.py` launches it (no browser download)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_api_docs_browser import CHROMIUM, FLAGS, _browser_missing
from tests.integration.harness import Service, service_env, start_standalone

#: generous bounds: they detect a hang, they time nothing
WAIT_MS = 60_000
#: a window wide enough for the list's columns
VIEWPORT = {"width": 1400, "height": 900}
#: records what the page's policy refuses, as the page itself sees it
WATCH_POLICY = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation', e => "
    "window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)

#: how Chromium's console tells an answer of an error status
LOAD_FAILED = "Failed to load resource: the server responded with a status of "


def require_browser() -> None:
    """Skip without Chromium, or fail when `PROCEXEC_REQUIRE_BROWSER=1` (CI)."""
    missing = _browser_missing()
    if missing:
        if os.environ.get("PROCEXEC_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)


@dataclass
class Standalone:
    root: str  # the server's root: the dashboard's page is `{root}/`
    api: str  # the build information's URL, `{root}/service/process-exec`
    token: str
    data_dir: Path
    service: Service

    def token_of_scope(self, scope: str) -> str:
        """Another token of this store, of `scope` (`procexec token create`)."""
        command = [sys.executable, "-m", "procexec.cli", "token", "create", "--user", scope]
        result = subprocess.run(
            [*command, "--scope", scope],
            env=service_env(self.data_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


#: a process one run at a time: the runs past it wait for a slot, as the dashboard shows
SOLO_MODULE = """
import time

from pydantic import BaseModel

from procexec import Process


class SoloParams(BaseModel):
    sleep: float = 0


SOLO = Process("SOLO", params=SoloParams, max_running=1, description="One run at a time")


@SOLO.phase("EXTRACT")
def extract(ctx, _):
    ctx.info(f"sleeping {ctx.params.sleep} s")
    time.sleep(ctx.params.sleep)
"""


@contextmanager
def standalone(folder: Path) -> Iterator[Standalone]:
    """`procexec standalone` on a data folder in `folder`, serving the bundled examples and
    `SOLO`; stopped with its children after."""
    data_dir = folder / "data"
    (folder / "dashboard_solo.py").write_text(SOLO_MODULE)
    env = service_env(data_dir, PROCEXEC_PROCESSES="dashboard_solo", PYTHONPATH=str(folder))
    service, url, token = start_standalone(env, folder)
    try:
        root = url.removesuffix("/service/process-exec")
        yield Standalone(root, url, token, data_dir, service)
    finally:
        service.stop()


@dataclass
class Watched:
    """A page, and what it said: console lines, errors, requests."""

    page: Any
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def problems(self, answered: tuple[int, ...] = ()) -> list[str]:
        """Console errors (a refused script or style is one), page errors, policy violations;
        the browser's line for an API answer of a status in `answered` (a 400 or 401 the
        test caused) aside."""
        violations = [f"violation: {v}" for v in self.page.evaluate("window.__violations")]
        expected = tuple(f"error: {LOAD_FAILED}{status} " for status in answered)
        errors = [
            line
            for line in self.console
            if line.startswith(("error", "pageerror")) and not line.startswith(expected)
        ]
        refused = [line for line in self.console if "Content Security Policy" in line]
        return [*violations, *errors, *refused]


@contextmanager
def browser() -> Iterator[Any]:
    """Chromium, headless, closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def watched_page(chromium: Any) -> Watched:
    """A new page (its own sessionStorage) whose console, errors and requests are kept."""
    page = chromium.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page)
    page.on("console", lambda message: watched.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: watched.console.append(f"pageerror: {error}"))
    page.on("request", lambda request: watched.requests.append(request.url))
    page.add_init_script(WATCH_POLICY)
    return watched


def log_in(page: Any, root: str, token: str) -> Any:
    """Open the dashboard and log in; returns the page's answer (its headers)."""
    answer = page.goto(f"{root}/", wait_until="load")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view table.runs")
    return answer
