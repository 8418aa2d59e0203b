"""Ops' view, on each broker: Celery's own worker options reach the workers, LOAD runs on the
worker of the loader queue, and Flower (with basic authentication) lists every run by process
name and execution id, failed runs as FAILURE with the run's message; a message of the earlier
form (the id as an argument) runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.trigger_service import TriggerService
from procexec.service import build
from procexec.workers.celery_app import (
    LOAD_TASK,
    RUN_TASK,
    TRIGGER_TASK,
    load_task_id,
    make_celery,
)
from tests.integration.harness import (
    PROCEXEC,
    Service,
    api_client,
    create_token,
    free_port,
    require_redis,
    service_env,
    stop_all,
    trigger,
    wait_http,
    wait_terminal,
    wait_worker_ready,
)

pytestmark = pytest.mark.e2e

AUTH = ("ops", "s3cret-pass")


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    broker = require_redis() if request.param == "redis" else None
    return service_env(tmp_path / "data", broker)


@pytest.fixture
def services(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str, Service]]:
    """A worker of the run queue started with Celery's own options, a loader worker, Flower
    with basic auth, and the API."""
    node = f"ops-{free_port()}@%h"
    celery_options = ["-n", node, "-Q", "procexec", "-c", "3", "-P", "threads"]
    worker = Service(
        "worker",
        [sys.executable, "-m", "procexec.cli", "worker", *celery_options],
        env=env,
        log_dir=tmp_path,
    )
    loader = Service(
        "loader",
        [PROCEXEC, "worker", "-n", f"loader-{free_port()}@%h", "-Q", "loader", "-P", "threads"],
        env=env,
        log_dir=tmp_path,
    )
    flower_port, api_port = free_port(), free_port()
    options = [f"--port={flower_port}", f"--basic-auth={':'.join(AUTH)}", "--address=127.0.0.1"]
    flower = Service(
        "flower",
        [PROCEXEC, "flower", *options],
        env=env,
        log_dir=tmp_path,
    )
    api = Service("api", [PROCEXEC, "api", "--port", str(api_port)], env=env, log_dir=tmp_path)
    url = f"http://127.0.0.1:{api_port}/service/process-exec"
    try:
        wait_worker_ready(worker)
        wait_worker_ready(loader)
        wait_http(api, url)
        flower.wait_for_output(r"Visit me at http", timeout=60)
        yield url, f"http://127.0.0.1:{flower_port}", worker
    finally:
        stop_all(api, worker, loader, flower)


def _flower_tasks(flower: str, want: set[str], timeout: float = 30) -> dict[str, Any]:
    """Flower's tasks once every id of `want` is there in a final state."""
    deadline = time.monotonic() + timeout
    tasks: dict[str, Any] = {}
    with httpx2.Client(timeout=10, trust_env=False) as client:
        while time.monotonic() < deadline:
            response = client.get(f"{flower}/api/tasks", auth=AUTH)
            assert response.status_code == 200, response.text
            tasks = response.json()
            if all(tasks.get(i, {}).get("state") in ("SUCCESS", "FAILURE") for i in want):
                return tasks
            time.sleep(0.3)
    pytest.fail(f"Flower did not list {sorted(want)} as finished: {tasks}")


def test_flower_shows_each_run_by_name_and_failed_runs_as_failures(
    env: dict[str, str], services: tuple[str, str, Service]
) -> None:
    url, flower, worker = services
    settings = Settings.from_env(env)
    app = make_celery(settings)

    # Celery's own options reached the worker.
    stats = app.control.inspect(timeout=5).stats() or {}
    [(node, stat)] = [(name, s) for name, s in stats.items() if name.startswith("ops-")]
    [loader] = [name for name in stats if name.startswith("loader-")]
    assert stat["pool"]["max-concurrency"] == 3
    assert stat["pool"]["implementation"].endswith("thread:TaskPool")
    queues = app.control.inspect(destination=[node, loader], timeout=5).active_queues() or {}
    assert [queue["name"] for queue in queues[node]] == ["procexec"]
    assert [queue["name"] for queue in queues[loader]] == ["loader"]

    token = create_token(env, "ops")
    with api_client(url, token) as client:
        ok = trigger(client, "ECB_FX")
        bad = trigger(client, "DEMO", {"fail_in": "LOAD"})
        assert wait_terminal(client, ok)["status"] == "success"
        failed = wait_terminal(client, bad)
    assert failed["status"] == "failed"

    ok_load, bad_load = load_task_id(ok), load_task_id(bad)
    tasks = _flower_tasks(flower, {ok, bad, ok_load, bad_load})
    assert tasks[ok]["state"] == "SUCCESS"
    assert tasks[ok]["name"] == RUN_TASK
    assert tasks[ok]["worker"] == node
    assert "'process': 'ECB_FX'" in tasks[ok]["kwargs"]
    assert f"'execution_id': '{ok}'" in tasks[ok]["kwargs"]
    # the run's parameters, shown beside them (not sent: the worker reads them stored)
    assert "'parameters': {" in tasks[ok]["kwargs"]
    assert "'fail_in': 'LOAD'" in tasks[bad]["kwargs"]
    # SEND handed the batch over: LOAD ran on the loader's worker
    assert (tasks[ok_load]["name"], tasks[ok_load]["state"]) == (LOAD_TASK, "SUCCESS")
    assert tasks[ok_load]["worker"] == loader
    assert "'process': 'ECB_FX'" in tasks[ok_load]["kwargs"]
    # DEMO failed in LOAD, on the loader: that task is the FAILURE, with the run's message
    assert tasks[bad]["state"] == "SUCCESS"
    assert tasks[bad_load]["state"] == "FAILURE"
    assert tasks[bad_load]["worker"] == loader
    assert "'process': 'DEMO'" in tasks[bad_load]["kwargs"]
    assert failed["message"] in tasks[bad_load]["exception"]  # the run's own message
    # Worker log lines name the process and the run.
    worker.wait_for_output(rf"DEMO {bad}: batch handed to the loader queue", timeout=10)

    with httpx2.Client(timeout=10, trust_env=False) as client:
        assert client.get(f"{flower}/api/tasks").status_code == 401  # no credentials
        assert client.get(f"{flower}/api/tasks", auth=("ops", "wrong")).status_code == 401

    # The beat entries' task, sent as `celery call` would, triggers a run of its process.
    app.send_task(TRIGGER_TASK, args=["ECB_FX"], queue="procexec")
    with api_client(url, token) as client:
        deadline = time.monotonic() + 30
        while not (
            found := client.get(
                "v1", params={"reason": f"Triggered by the Celery task {TRIGGER_TASK}"}
            ).json()
        ):
            assert time.monotonic() < deadline, f"no run triggered by {TRIGGER_TASK}"
            time.sleep(0.2)
        assert found[0]["name"] == "ECB_FX"
        assert wait_terminal(client, found[0]["_id"])["status"] == "success"

    # A message of the earlier form, the execution id as its only argument, still runs.
    store = open_store(settings.store_url)
    try:
        triggers = TriggerService(store, build(settings, store=store).registry, lambda *_: None)
        doc = triggers.record("ECB_FX", run_as="ops", environment="production")
        app.send_task(RUN_TASK, args=[doc["_id"]], task_id=doc["_id"], queue="procexec")
        with api_client(url, token) as client:
            assert wait_terminal(client, doc["_id"])["status"] == "success"
    finally:
        store.close()
