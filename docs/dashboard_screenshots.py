"""Re-takes the dashboard's screenshots in docs/ (dashboard-list.png, dashboard-run.png,
dashboard-processes.png): a `procexec standalone` on a temporary data folder, a few real runs,
and Debian's Chromium driven by Playwright, as the dashboard's browser tests do.

    .venv/bin/python docs/dashboard_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.api.dashboard_browser import browser, log_in, standalone, watched_page  # noqa: E402
from tests.integration.harness import api_client, trigger, wait_terminal  # noqa: E402


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        standalone(Path(folder)) as server,
        api_client(server.api, server.token) as client,
    ):
        for body in ({"log_lines": 2}, {"fail_in": "SEND"}, {"log_lines": 1}):
            wait_terminal(client, trigger(client, "DEMO", body))
        wait_terminal(client, trigger(client, "ECB_FX"))
        shown = trigger(client, "DEMO", {"sleep": 1, "log_lines": 3})
        wait_terminal(client, shown)
        holder = trigger(client, "SOLO", {"sleep": 30})
        while client.get(f"v1/{holder}").json()["status"] != "running":
            time.sleep(0.1)  # it holds the slot: the next one waits
        waiting = trigger(client, "SOLO")
        with browser() as chromium:
            page = watched_page(chromium).page
            log_in(page, server.root, server.token)
            page.wait_for_selector(f"tr.run-row[data-id='{waiting}']")
            page.wait_for_timeout(500)
            page.screenshot(path=ROOT / "docs/dashboard-list.png")
            page.goto(f"{server.root}/#/run/{shown}")
            page.wait_for_selector("#timeline .phase[data-index='3']")
            page.wait_for_timeout(500)
            page.screenshot(path=ROOT / "docs/dashboard-run.png", full_page=True)
            page.goto(f"{server.root}/#/processes")
            page.wait_for_selector(".last-runs")
            page.click("button.trigger[data-process=DEMO]")
            page.wait_for_timeout(500)
            page.screenshot(path=ROOT / "docs/dashboard-processes.png")
        for execution_id in (waiting, holder):
            client.post(f"v1/{execution_id}/cancel")
    print("docs/dashboard-list.png, docs/dashboard-run.png, docs/dashboard-processes.png")


if __name__ == "__main__":
    main()
