"""The dashboard at `/` in a real browser (Debian's Chromium, driven by Playwright) against a
real `procexec standalone`: its worker runs the bundled DEMO and ECB_FX processes for real.

Logging in and out, the list's filters and its live refresh, a run triggered from the
processes' form whose timeline and log fill in while it runs, cancel and rerun, the API's 400
and 403 shown where they apply; all under the page's Content-Security-Policy, with no
violation nor error in the console, and no request leaving 127.0.0.1. Without Chromium the
tests skip, unless `PROCEXEC_REQUIRE_BROWSER=1` (CI), where they fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from procexec.api.dashboard import PAGE_POLICY
from tests.api.dashboard_browser import (
    WAIT_MS,
    Standalone,
    Watched,
    browser,
    log_in,
    require_browser,
    standalone,
    watched_page,
)
from tests.integration.harness import api_client, trigger, wait_terminal

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    require_browser()
    with standalone(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium(server: Standalone) -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    found = watched_page(chromium)
    yield found
    found.page.close()


def _check_clean(watched: Watched, *answered: int) -> None:
    assert watched.problems(answered) == [], watched.console
    hosts = {urlsplit(url).hostname for url in watched.requests if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, watched.requests


def _rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "tr.run-row",
        "rows => rows.map(r => ({id: r.dataset.id, name: r.querySelector('.name').textContent,"
        " status: r.querySelector('.badge').textContent}))",
    )


def _wait_rows(page: Any, condition: str) -> None:
    """Until the rows meet `condition`, a JavaScript expression over `rows` (the list's)."""
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('tr.run-row')].map(r => ({"
        "id: r.dataset.id, name: r.querySelector('.name').textContent,"
        f"status: r.querySelector('.badge').textContent}})); return {condition}; }}",
        timeout=WAIT_MS,
    )


def test_login_the_list_its_filters_its_live_rows_and_logout(
    server: Standalone, watched: Watched
) -> None:
    with api_client(server.api, server.token) as client:
        ids = {
            "ok": trigger(client, "DEMO", {"log_lines": 1}),
            "failed": trigger(client, "DEMO", {"fail_in": "TRANSFORM"}),
            "ecb": trigger(client, "ECB_FX"),
        }
        for execution_id in ids.values():
            wait_terminal(client, execution_id)
    page = watched.page

    answer = page.goto(f"{server.root}/", wait_until="load")
    assert answer.status == 200
    assert answer.headers["content-security-policy"] == PAGE_POLICY
    assert answer.headers["x-frame-options"] == "DENY"
    assert page.is_visible("#login-form")
    # a wrong token: the login form again, with the API's 401 message
    page.fill("#token", "pe_not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#login-error').textContent.length > 0")
    assert "token" in page.inner_text("#login-error").lower()
    assert page.is_visible("#login-form") and not page.is_visible("#logout")
    assert page.evaluate("sessionStorage.length") == 0

    log_in(page, server.root, server.token)
    assert page.evaluate("sessionStorage.getItem('procexec.token')") == server.token
    _wait_rows(page, "rows.length >= 3")
    assert {ids["ok"], ids["failed"], ids["ecb"]} <= {row["id"] for row in _rows(page)}
    failed_count = page.inner_text(".count[data-status=failed]")
    assert failed_count == "failed 1", failed_count

    # the filters change the rows: status, name, free text, and a query the API refuses
    page.select_option("select[name=status]", "failed")
    _wait_rows(page, "rows.length > 0 && rows.every(r => r.status === 'failed')")
    assert [row["id"] for row in _rows(page)] == [ids["failed"]]
    page.select_option("select[name=status]", "")
    page.fill("input[name=name]", "ECB_FX")
    _wait_rows(page, "rows.length > 0 && rows.every(r => r.name === 'ECB_FX')")
    page.fill("input[name=name]", "")
    page.fill("input[name=search]", "failed")
    _wait_rows(page, f"rows.length === 1 && rows[0].id === '{ids['failed']}'")
    page.fill("input[name=search]", "")
    page.fill("input[name=filter]", "stauts=failed")
    page.wait_for_selector(".list-error .error")
    assert "did you mean 'status'" in page.inner_text(".list-error")
    page.fill("input[name=filter]", "trigger=manual and name=DEMO")
    _wait_rows(page, "rows.length === 2 && rows.every(r => r.name === 'DEMO')")
    assert page.inner_text(".list-error") == ""
    page.click("button[type=reset]")
    _wait_rows(page, "rows.length >= 3")
    # a date range on start: the runs' own day keeps them, the day before has none
    today = page.evaluate("new Date().toISOString().slice(0, 10)")
    page.fill("input[name=from]", today)
    page.fill("input[name=to]", today)
    _wait_rows(page, "rows.length >= 3")
    page.fill("input[name=from]", "2021-07-01")
    page.fill("input[name=to]", "2021-07-02")
    page.wait_for_selector("td.empty")
    assert _rows(page) == []
    page.click("button[type=reset]")
    _wait_rows(page, "rows.length >= 3")

    # a run triggered elsewhere appears without a reload, newest first
    page.evaluate("window.__same_page = true")
    with api_client(server.api, server.token) as client:
        fresh = trigger(client, "DEMO", {"log_lines": 1})
        wait_terminal(client, fresh)
    _wait_rows(page, f"rows[0].id === '{fresh}' && rows[0].status === 'success'")
    assert page.evaluate("window.__same_page") is True

    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("sessionStorage.getItem('procexec.token')") is None
    assert not page.is_visible("#view table.runs")
    page.reload(wait_until="load")
    assert page.is_visible("#login-form")
    _check_clean(watched, 400, 401)


def _wait_status(page: Any, status: str) -> None:
    """Until the run's page shows `status`; a failure tells what the page showed."""
    try:
        page.wait_for_function(
            f"() => document.querySelector('#run-status').textContent === '{status}'"
        )
    except Exception as exc:  # playwright's TimeoutError
        pytest.fail(f"the run's page never showed {status}: {page.inner_text('#view')} ({exc})")


def _phase_count(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('#timeline .phase').length"))


def test_a_run_triggered_from_its_form_fills_its_timeline_live(
    server: Standalone, watched: Watched
) -> None:
    page = watched.page
    log_in(page, server.root, server.token)
    page.click("nav a[data-view=processes]")
    page.wait_for_selector("tr[data-process=ECB_FX]")
    assert "at 16:30, Monday to Friday" in page.inner_text("tr[data-process=ECB_FX]")
    page.click("button.trigger[data-process=DEMO]")
    form = "form.trigger-form[data-process=DEMO]"
    # a parameter the API refuses: its 400 message, and no run
    page.fill(f"{form} input[name=guard]", "no spaces allowed")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"{form} .trigger-error .error")
    assert "body.guard" in page.inner_text(f"{form} .trigger-error")
    assert "#/run/" not in page.url

    page.fill(f"{form} input[name=guard]", "")
    page.fill(f"{form} input[name=sleep]", "1")
    page.fill(f"{form} input[name=log_lines]", "2")
    page.fill(f"{form} input[name=_reason]", "from the dashboard")
    page.evaluate("window.__same_page = true")
    page.click(f"{form} button[type=submit]")
    page.wait_for_url("**/#/run/*")
    run_id = page.url.rsplit("/", 1)[1]
    # the timeline fills in while the run goes: phases seen before all four are there
    counts: set[int] = set()
    page.wait_for_selector("#timeline .phase")
    for _ in range(WAIT_MS // 100):  # a bound on a hang, not a timing
        counts.add(_phase_count(page))
        if page.inner_text("#run-status") == "success":
            break
        page.wait_for_timeout(100)
    else:
        pytest.fail(f"the run's page never showed success: {page.inner_text('#view')}")
    assert counts & {1, 2, 3}, counts
    assert _phase_count(page) == 4
    statuses = page.eval_on_selector_all("#timeline .phase", "ps => ps.map(p => p.dataset.status)")
    assert statuses == ["success"] * 4
    assert page.evaluate("window.__same_page") is True  # followed, not reloaded
    log = page.inner_text("#log")
    assert "LOAD line 2 of 2" in log and log.index("EXTRACT line 1") < log.index("LOAD line 1")
    details = page.inner_text("#details")
    assert "from the dashboard" in details and "admin" in details
    parameters = page.inner_text("#parameters")
    assert "log_lines" in parameters and "2" in parameters
    with api_client(server.api, server.token) as client:
        doc = wait_terminal(client, run_id)
    assert doc["status"] == "success" and doc["reason"] == "from the dashboard"
    _check_clean(watched, 400)


def test_cancel_and_rerun_and_the_api_s_403_for_a_read_token(
    server: Standalone, watched: Watched, chromium: Any
) -> None:
    page = watched.page
    with api_client(server.api, server.token) as client:
        slow = trigger(client, "DEMO", {"sleep": 30})
        failed = trigger(client, "DEMO", {"fail_in": "SEND"})
        wait_terminal(client, failed)

    # a read token: the cancel button shows the API's 403 and stays disabled
    reader = watched_page(chromium)
    try:
        log_in(reader.page, server.root, server.token_of_scope("read"))
        reader.page.goto(f"{server.root}/#/run/{slow}")
        reader.page.click("#cancel-button")
        reader.page.wait_for_selector("#action-error .error")
        refusal = reader.page.inner_text("#action-error")
        assert refusal.startswith("Cancel refused: ") and "scope" in refusal, refusal
        assert reader.page.is_disabled("#cancel-button")
        _check_clean(reader, 403)
    finally:
        reader.page.close()

    log_in(page, server.root, server.token)
    page.goto(f"{server.root}/#/run/{slow}")
    page.wait_for_selector("#timeline .phase[data-status=running]")
    page.click("#cancel-button")
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'failed'")
    page.wait_for_function(
        "() => document.querySelector('#details').textContent.includes('Cancelled')"
    )
    assert page.is_visible("#rerun-button")

    # the failed run, rerun from its failed phase: the new run's page
    page.goto(f"{server.root}/#/run/{failed}")
    page.wait_for_selector("#rerun-button")
    assert page.inner_text("#run-status") == "failed"
    page.click("#rerun-button")
    page.wait_for_function(f"() => !location.hash.endsWith('{failed}')")
    rerun_id = page.url.rsplit("/", 1)[1]
    with api_client(server.api, server.token) as client:
        doc = wait_terminal(client, rerun_id)
    assert doc["name"] == "DEMO" and doc["_id"] != failed
    page.wait_for_function(
        f"() => document.querySelector('#run-status').textContent === '{doc['status']}'"
    )
    _check_clean(watched)


def test_a_cut_stream_resumes_after_the_last_event_seen(
    server: Standalone, watched: Watched
) -> None:
    """The first connection to the run's events is cut after its first events: the page
    connects again with `Last-Event-ID`, and its log ends with every line once."""
    page = watched.page
    seen: list[dict[str, str]] = []
    prefix: list[str] = []

    def cut_first(route: Any) -> None:
        seen.append(dict(route.request.headers))
        if len(seen) > 1:
            route.continue_()
            return
        # the server's own first two events, then the stream ends: a cut connection
        url, headers = route.request.url, {"Authorization": f"Bearer {server.token}"}
        with (
            httpx2.Client(timeout=30, trust_env=False) as client,
            client.stream("GET", url, headers=headers) as answer,
        ):
            block: list[str] = []
            for line in answer.iter_lines():
                if line:
                    block.append(line)
                elif block and not block[0].startswith(":"):
                    prefix.append("\r\n".join(block) + "\r\n\r\n")
                    block = []
                    if len(prefix) == 2:
                        break
        route.fulfill(status=200, content_type="text/event-stream", body="".join(prefix))

    log_in(page, server.root, server.token)
    page.route("**/events", cut_first)
    with api_client(server.api, server.token) as client:
        run_id = trigger(client, "DEMO", {"sleep": 0.5, "log_lines": 2})
        page.goto(f"{server.root}/#/run/{run_id}")
        page.wait_for_function(
            "() => document.querySelector('#run-status').textContent === 'success'"
        )
        doc = wait_terminal(client, run_id)
    assert len(seen) >= 2, seen
    last_id = next(line for line in prefix[-1].split("\r\n") if line.startswith("id:"))[3:]
    assert "last-event-id" not in seen[0]
    assert seen[1]["last-event-id"] == last_id.strip()
    stored = [line for phase in doc["phases"] for line in phase["log"]]
    page.wait_for_function(
        f"() => document.querySelectorAll('#log .line').length === {len(stored)}"
    )
    shown = page.eval_on_selector_all("#log .line", "ls => ls.map(l => l.lastChild.textContent)")
    assert shown == stored
    _check_clean(watched)


def wait_status(client: Any, execution_id: str, status: str) -> None:
    """Until the run has `status` (a bound on a hang, not a timing)."""
    for _ in range(WAIT_MS // 100):
        if client.get(f"v1/{execution_id}").json()["status"] == status:
            return
        time.sleep(0.1)
    pytest.fail(f"{execution_id} never {status}")


def test_a_run_waiting_for_a_slot_shows_as_such(server: Standalone, watched: Watched) -> None:
    page = watched.page
    with api_client(server.api, server.token) as client:
        holder = trigger(client, "SOLO", {"sleep": 60})
        waiting = holder
        try:
            wait_status(client, holder, "running")  # it holds the slot: the next one waits
            waiting = trigger(client, "SOLO", {"sleep": 0})
            log_in(page, server.root, server.token)
            page.fill("input[name=name]", "SOLO")
            _wait_rows(page, f"rows.some(r => r.id === '{waiting}')")
            row = f"tr.run-row[data-id='{waiting}'] .badge"
            page.wait_for_function(
                f"() => document.querySelector(\"{row}\").textContent === 'waiting for a slot'"
            )
            assert "Waiting for a slot" in page.inner_text(f"tr.run-row[data-id='{waiting}']")
            page.click(f"tr.run-row[data-id='{waiting}'] a.name")
            _wait_status(page, "waiting for a slot")
            assert page.is_visible("#cancel-button")
            _check_clean(watched)
        finally:
            for execution_id in {waiting, holder}:
                client.post(f"v1/{execution_id}/cancel")


def test_the_page_runs_from_the_installed_files(server: Standalone) -> None:
    """The standalone serves the files of the package it runs (`procexec.api.web`)."""
    import urllib.request

    with urllib.request.urlopen(f"{server.root}/dashboard/main.js", timeout=30) as answer:
        assert answer.headers["content-type"].startswith("text/javascript")
        served = answer.read().decode()
    assert served == (Path(__file__).resolve().parents[2] / "api/web/main.js").read_text()
