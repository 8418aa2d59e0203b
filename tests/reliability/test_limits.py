"""Concurrency limits on real processes: `procexec process limit DEMO 1` through the CLI, then
20 DEMO runs across two Celery workers on a Redis of the test's own: never two running at once
(read from the documents' times), all 20 end; a worker SIGKILLed while it holds the slot blocks
the rest no longer than the lost-run timeout.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any

import pytest

from tests.integration.harness import run_cli, wait_worker_ready
from tests.reliability.conftest import LOST_RUN_TIMEOUT, Cluster, wait_beat_ready

#: what the lost-run detection may take beyond the timeout (as tests/reliability/test_faults.py)
SLACK = 6.0

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def interval(doc: dict[str, Any]) -> tuple[str, str]:
    """When a run ran: its first phase's start (its claim), its end."""
    return doc["phases"][0]["start"], doc["end"]


def limit_demo(cluster: Cluster) -> None:
    result = run_cli("process", "limit", "DEMO", "1", env=cluster.env)
    assert (result.returncode, result.stdout) == (0, "DEMO: max_running 1\n"), result.stderr
    listed = run_cli("process", "list", "--json", env=cluster.env)
    assert '"maxRunning": 1' in listed.stdout


def test_max_running_1_across_two_workers_and_a_killed_holder(outage_cluster: Cluster) -> None:
    cluster = outage_cluster
    limit_demo(cluster)
    beat = cluster.beat(wait=False)
    workers = [cluster.worker(wait=False), cluster.worker(wait=False)]
    for worker in workers:
        wait_worker_ready(worker)
    wait_beat_ready(beat)

    ids = []
    for _ in range(20):
        ids.append(cluster.trigger("DEMO", {"sleep": 0.05}))
        time.sleep(0.002)
    docs = [cluster.wait_terminal(execution_id, timeout=120) for execution_id in ids]
    assert [doc["status"] for doc in docs] == ["success"] * 20
    spans = sorted(interval(doc) for doc in docs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two runs at once: {spans}"

    # A worker killed while it holds the slot: the run is taken for lost within the lost-run
    # timeout and resumed on the other worker, keeping its slot; then the waiting runs run.
    holder = cluster.trigger("DEMO", {"sleep": 4})
    cluster.wait_doc(holder, lambda doc: doc["status"] == "running", "the holder running")
    waiting = [cluster.trigger("DEMO") for _ in range(3)]
    for execution_id in waiting:
        cluster.wait_doc(
            execution_id,
            lambda doc: doc["message"].startswith("Waiting for a slot: DEMO has 1 running"),
            "waiting for a slot",
        )
    token = str(cluster.store.get_meta(holder)["worker"])
    pid = int(token.split("#")[0].rsplit(":", 1)[1])
    [victim] = [worker for worker in workers if worker.pid == pid]
    os.killpg(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    victim.proc.wait(10)
    cluster.wait_doc(
        holder,
        lambda doc: cluster.store.get_meta(holder)["recoveries"] == 1,
        "lost-run recovery",
        timeout=LOST_RUN_TIMEOUT + SLACK - (time.monotonic() - killed),
    )
    finals = [
        cluster.wait_terminal(execution_id, timeout=60) for execution_id in [holder, *waiting]
    ]
    assert [doc["status"] for doc in finals] == ["success"] * 4, finals
    spans = sorted(interval(doc) for doc in finals)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two runs at once: {spans}"
