"""Issue 5 with real processes: killed workers, a broker outage, duplicated task messages,
graceful shutdown and cancellation, each on real Celery workers over Redis and a SQLite store.

Runs are `DEMO` runs; the test reads their documents straight from the store file that the
workers write (WAL: readers never block them).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.harness import (
    api_client,
    create_token,
    run_cli,
    wait_http,
    wait_terminal,
    wait_worker_ready,
)
from tests.reliability.conftest import (
    LOST_RUN_TIMEOUT,
    Cluster,
    PrivateRedis,
    logged,
    phase,
    wait_beat_ready,
)

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
#: what the lost-run detection may take beyond the timeout: a housekeeping pass (1 s with a
#: 4 s timeout), the beat's tick, and the heartbeat the dead worker had sent last
SLACK = 6.0


def worker_pid(token: object) -> int:
    """The process id in a claim token, `host:pid#nonce`."""
    return int(str(token).split("#")[0].rsplit(":", 1)[1])


def worker_host(token: object) -> str:
    return str(token).split("#")[0]


def test_a_killed_worker_is_detected_and_its_run_resumes_on_another(cluster: Cluster) -> None:
    beat = cluster.beat(wait=False)
    workers = [cluster.worker(wait=False), cluster.worker(wait=False)]
    for worker in workers:
        wait_worker_ready(worker)
    wait_beat_ready(beat)
    execution_id = cluster.trigger("DEMO", {"sleep": 1.2, "log_lines": 3})

    cluster.wait_doc(
        execution_id,
        lambda doc: logged(doc, "TRANSFORM", "TRANSFORM line 1 of 3"),
        "TRANSFORM under way",
    )
    token = cluster.store.get_meta(execution_id)["worker"]
    [victim] = [worker for worker in workers if worker.pid == worker_pid(token)]
    [survivor] = [worker for worker in workers if worker is not victim]

    os.killpg(victim.pid, signal.SIGKILL)  # the whole worker, as the OOM killer would
    killed = time.monotonic()
    victim.proc.wait(10)
    at_kill = cluster.doc(execution_id)
    assert at_kill["status"] == "running"
    done = [p["name"] for p in at_kill["phases"] if p["status"] == "success"]
    resumed_phase = PHASES[len(done)]
    assert done == PHASES[: len(done)] and "EXTRACT" in done

    # Detected as lost within the timeout (plus one housekeeping pass), by the beat.
    cluster.wait_doc(
        execution_id,
        lambda doc: cluster.store.get_meta(execution_id)["recoveries"] == 1,
        "lost-run recovery",
        timeout=LOST_RUN_TIMEOUT + SLACK - (time.monotonic() - killed),
    )
    final = cluster.wait_terminal(execution_id, timeout=30)

    assert (final["status"], final["message"]) == ("success", "Completed Successfully"), final
    assert [(p["name"], p["status"]) for p in final["phases"]] == [(p, "success") for p in PHASES]
    meta = cluster.store.get_meta(execution_id)
    assert worker_pid(meta["worker"]) == survivor.pid
    assert meta["recoveries"] == 1
    # Finished phases were not run again: same log, same end.
    for name in done:
        before, after = phase(at_kill, name), phase(final, name)
        assert before is not None and after is not None
        assert after["end"] == before["end"], name
        assert logged(final, name, f"{name} line 1 of 3") == 1, name
    # The first unfinished phase ran again on the survivor, from the start.
    resumed = phase(final, resumed_phase)
    assert resumed is not None
    assert logged(
        final, resumed_phase, f"Resuming {resumed_phase} on {worker_host(meta['worker'])}"
    )
    assert logged(final, resumed_phase, f"{resumed_phase} line 3 of 3") >= 1
    assert "lost run(s) resumed" in beat.output()
    assert final["status"] != "running"


def test_a_trigger_during_a_broker_outage_runs_when_the_broker_is_back(
    outage_cluster: Cluster, private_redis: PrivateRedis
) -> None:
    cluster = outage_cluster
    beat = cluster.beat(wait=False)
    worker = cluster.worker(wait=False)
    api, url = cluster.api(wait=False)
    wait_http(api, url)
    token = create_token(cluster.env, "alice")  # once the API has made the store
    wait_worker_ready(worker)
    wait_beat_ready(beat)

    private_redis.stop()
    with api_client(url, token) as client:
        response = client.post("v1", json={"name": "DEMO", "body": {"log_lines": 2}})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "triggered"
        execution_id = accepted["_id"]
        assert cluster.doc(execution_id) == accepted
        assert f"dispatching {execution_id} failed" in api.output()
        # The housekeeper tries again while the broker is still down, and fails too.
        beat.wait_for_output(rf"dispatching {execution_id} failed", 20)
        assert cluster.doc(execution_id)["status"] == "triggered"

        private_redis.start()  # same port: everyone reconnects
        final = wait_terminal(client, execution_id, timeout=60)

    assert (final["status"], final["message"]) == ("success", "Completed Successfully"), final
    assert [p["name"] for p in final["phases"]] == PHASES
    assert "trigger(s) sent again" in beat.output()


def test_duplicated_task_messages_run_an_execution_once(cluster: Cluster) -> None:
    guard = cluster.settings.data_dir / "guards" / "duplicates"  # DEMO's lock files, by name
    workers = [cluster.worker(wait=False), cluster.worker(wait=False)]
    for worker in workers:
        wait_worker_ready(worker)
    execution_id = cluster.record("DEMO", {"sleep": 1.0, "log_lines": 3, "guard": "duplicates"})

    for _ in range(3):
        cluster.dispatch(execution_id)
    final = cluster.wait_terminal(execution_id, timeout=30)

    assert final["status"] == "success", final
    assert [p["name"] for p in final["phases"]] == PHASES
    for name in PHASES:
        assert logged(final, name, f"{name} line 1 of 3") == 1, name
        assert logged(final, name, f"Completed {name}") == 1, name
    assert sorted(path.name for path in guard.iterdir()) == []  # no overlap, no lock left

    def skipped() -> int:
        return sum(w.output().count(f"{execution_id} is not waiting to run") for w in workers)

    deadline = time.monotonic() + 15
    while skipped() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert skipped() == 2  # the two copies were received and did nothing

    # A copy delivered after the end does not run it again either.
    cluster.dispatch(execution_id)
    deadline = time.monotonic() + 15
    while skipped() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert skipped() == 3
    assert cluster.doc(execution_id) == final
    assert cluster.store.get_meta(execution_id)["recoveries"] is None


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_stopped_with_sigterm_finishes_its_run(cluster: Cluster, pool: str) -> None:
    # a worker of the run queue alone: SEND hands its batch to the loader queue
    worker = cluster.worker(pool=pool, queues="procexec")
    execution_id = cluster.trigger("DEMO", {"sleep": 0.6, "log_lines": 2})
    cluster.wait_doc(
        execution_id,
        lambda doc: logged(doc, "EXTRACT", "EXTRACT line 1 of 2"),
        "EXTRACT under way",
    )

    worker.terminate()
    assert worker.proc.wait(30) == 0  # it finished its task, then exited
    assert "Warm shutdown" in worker.output()
    # Its task ended where SEND handed the batch to the loader queue; LOAD waits for a loader.
    waiting = cluster.doc(execution_id)
    assert (waiting["status"], waiting["message"]) == ("running", "Waiting for a loader")
    assert [(p["name"], p["status"]) for p in waiting["phases"]] == [
        (p, "success") for p in PHASES[:3]
    ]

    assert "batch handed to the loader queue" in worker.output()
    both = cluster.worker(pool=pool)  # the next worker, of both queues, loads it
    final = cluster.wait_terminal(execution_id, timeout=30)
    assert (final["status"], final["message"]) == ("success", "Completed Successfully"), final
    assert [(p["name"], p["status"]) for p in final["phases"]] == [(p, "success") for p in PHASES]
    assert final["phases"][:3] == waiting["phases"]  # nothing ran twice

    # a worker of both queues runs a run's LOAD itself: it never hands a batch to itself
    other = cluster.trigger("DEMO", {})
    assert cluster.wait_terminal(other, timeout=30)["status"] == "success"
    assert f"DEMO {other}: finished success" in both.output()
    assert "handed to the loader queue" not in both.output()
    meta = cluster.store.get_meta(execution_id)
    assert meta["recoveries"] is None  # handed over, not recovered


def test_cancel_from_the_cli_stops_a_running_run_and_frees_the_worker(cluster: Cluster) -> None:
    worker = cluster.worker(concurrency=1)
    execution_id = cluster.trigger("DEMO", {"sleep": 60, "log_lines": 120})
    cluster.wait_doc(
        execution_id,
        lambda doc: logged(doc, "EXTRACT", "EXTRACT line 2 of 120"),
        "EXTRACT under way",
    )

    result = run_cli("cancel", execution_id, "--user", "ops", env=cluster.env)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{execution_id}: failed (Cancelled by ops)\n"
    cancelled = cluster.doc(execution_id)
    assert (cancelled["status"], cancelled["message"]) == ("failed", "Cancelled by ops")
    [extract] = cancelled["phases"]
    assert (extract["status"], extract["message"]) == ("failed", "Cancelled by ops")
    worker.wait_for_output(rf"execution {execution_id} stopped: Cancelled by ops", 15)

    # The only slot of the worker is free again: the next run goes through (the cancelled one
    # would have held it for a minute).
    following = cluster.trigger("DEMO", {"log_lines": 1})
    assert cluster.wait_terminal(following, timeout=20)["status"] == "success"
    assert cluster.doc(execution_id) == cancelled
    again = run_cli("cancel", execution_id, "--user", "ops", env=cluster.env)
    assert again.returncode == 2
    assert "already finished (failed)" in again.stderr
