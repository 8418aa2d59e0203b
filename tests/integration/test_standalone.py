"""`procexec standalone`: one command runs API, worker and beat; SIGTERM stops all of them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    PROCEXEC,
    Service,
    api_client,
    free_port,
    processes_with_env,
    service_env,
    trigger,
    wait_http,
    wait_terminal,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc"),
]


def test_standalone_runs_a_process_and_stops_with_its_children(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = service_env(data_dir)  # no PROCEXEC_BROKER_URL: the embedded broker
    port = free_port()
    standalone = Service(
        "standalone", [PROCEXEC, "standalone", "--port", str(port)], env=env, log_dir=tmp_path
    )
    try:
        url = standalone.wait_for_output(r"^  API:\s+(http://\S+)$", timeout=60)[1]
        token = standalone.wait_for_output(r"^  token:\s+(pe_[A-Za-z0-9_-]+)\s", timeout=5)[1]
        assert url == f"http://127.0.0.1:{port}/service/process-exec"
        build = wait_http(standalone, url)
        assert (build["store"], build["broker"]) == ("sqlite", "embedded")
        assert (data_dir / "procexec.db").exists()

        with api_client(url, token) as client:
            execution_id = trigger(client, "ECB_FX")
            doc = wait_terminal(client, execution_id)
        assert doc["status"] == "success", doc
        assert doc["loaderMessage"] == "Updated 32 series for 2021-07-01"
        assert doc["runAs"] == "admin"  # the user of the printed token

        # API, worker (with its pool) and beat: every process of this data folder.
        family = processes_with_env("PROCEXEC_DATA_DIR", str(data_dir))
        assert standalone.pid in family
        assert len(family) >= 3, family
        assert re.search(r"celery@\S+ ready\.", standalone.output())
        assert "beat: Starting..." in standalone.output()

        standalone.terminate()  # SIGTERM to the standalone process only, as a supervisor would
        standalone.proc.wait(40)
        deadline = time.monotonic() + 10
        while (left := processes_with_env("PROCEXEC_DATA_DIR", str(data_dir))) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert left == [], f"processes left after SIGTERM: {left}"
        assert "Warm shutdown" in standalone.output()
    finally:
        standalone.stop()
