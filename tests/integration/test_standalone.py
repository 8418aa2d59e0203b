"""`procexec standalone`: one command runs API, worker and beat; SIGTERM stops all of them."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.integration.harness import (
    PROCEXEC,
    Service,
    api_client,
    free_port,
    processes_with_env,
    service_env,
    start_standalone,
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
    standalone, url, token = start_standalone(env, tmp_path)
    try:
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
        # the beat loads the processes before it starts: its line may follow a quick run
        standalone.wait_for_output(r"beat: Starting\.\.\.", timeout=30)

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


def _children(url: str, timeout: float = 30, **want: object) -> dict[str, dict[str, Any]]:
    """Poll `/readyz` until it answers 200 and every child is running (and, for each
    `name=restarts`, has been restarted that many times); the children's state."""
    readyz = url.removesuffix("/service/process-exec") + "/readyz"
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    with httpx2.Client(timeout=10, trust_env=False) as client:
        while time.monotonic() < deadline:
            response = client.get(readyz)
            body = response.json()
            children = body["checks"]["children"]
            if response.status_code == 200 and all(
                children[name]["restarts"] == restarts for name, restarts in want.items()
            ):
                assert all(child["running"] for child in children.values()), body
                result: dict[str, dict[str, Any]] = children
                return result
            time.sleep(0.2)
    pytest.fail(f"/readyz did not show {want} within {timeout:g} s: {body}")


def test_standalone_restarts_a_worker_or_beat_that_dies(tmp_path: Path) -> None:
    standalone, url, token = start_standalone(service_env(tmp_path / "data"), tmp_path)
    try:
        standalone.wait_for_output(r"celery@\S+ ready\.", timeout=60)
        first = _children(url, worker=0, beat=0)

        for name, signum in (("worker", signal.SIGKILL), ("beat", signal.SIGKILL)):
            pid = first[name]["pid"]
            os.kill(pid, signum)
            standalone.wait_for_output(
                rf"{name} \(pid {pid}\) killed by SIGKILL after [\d.]+ s; starting it again",
                timeout=30,
            )
            after = _children(url, **{name: 1})
            assert after[name]["pid"] != pid
            assert after[name]["lastExit"].startswith("killed by SIGKILL after ")

        # The new worker runs what is triggered.
        standalone.wait_for_output(r"(?s)starting it again.*celery@\S+ ready\.", timeout=60)
        with api_client(url, token) as client:
            doc = wait_terminal(client, trigger(client, "ECB_FX"))
        assert doc["status"] == "success", doc
        assert standalone.alive()
    finally:
        standalone.stop()


def test_standalone_ends_when_a_child_cannot_start(tmp_path: Path) -> None:
    # A broker whose transport's library is not installed (kombu's SQS needs boto3): the worker
    # and the beat die at start, as they did when kombu's Redis transport missed `packaging`.
    assert importlib.util.find_spec("botocore") is None, "pick a transport not installed here"
    env = service_env(tmp_path / "data", "sqs://127.0.0.1")
    standalone = Service(
        "standalone",
        [PROCEXEC, "standalone", "--port", str(free_port())],
        env=env,
        log_dir=tmp_path,
    )
    try:
        code = standalone.proc.wait(90)
    except subprocess.TimeoutExpired:
        standalone.fail("still running: it accepts triggers that nothing can run")
    finally:
        standalone.stop()
    output = standalone.output()
    assert code == 1, output[-4000:]
    assert re.search(r"starting it again in \d+ s", output), output[-4000:]
    reason = re.search(r"procexec standalone: the (worker|beat) exited with status \d+ .*", output)
    assert reason, output[-4000:]
    assert "2 times in a row within 10 s of starting: giving up" in reason[0]
    # Its error is in the message, after the reason.
    assert "No module named 'botocore'" in output[reason.end() :], output[-4000:]
    assert processes_with_env("PROCEXEC_DATA_DIR", str(tmp_path / "data")) == []
