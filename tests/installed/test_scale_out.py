"""Across processes as across machines, from the installed wheel, on each broker: one API, two
workers on the run queue, one loader worker, the beat and Flower (with basic authentication),
each a process of its own, and 200 runs from several clients at once, a few told to fail.

Every run ran once (counted from its phase logs: each phase logged its line once, none was
resumed), the runs spread over both workers, every LOAD ran on the loader (Flower's task list
names the worker), Flower lists the tasks by process name and the failed runs as FAILURE, and
`celery inspect` shows that `-Q` and `--concurrency` reached the workers.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.installed.conftest import Broker, Installed, run_from_clients
from tests.installed.test_installed import _token
from tests.integration.harness import (
    BASE_PATH,
    Service,
    free_port,
    stop_all,
    wait_http,
    wait_worker_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

RUNS = 200
CLIENTS = 4
#: runs told to fail, by phase: on a worker of the run queue, and on the loader
FAIL_IN = {"TRANSFORM": 5, "LOAD": 5}
PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
AUTH = ("ops", "flower-pass")
WORKERS = ("w1", "w2")


def _celery_inspect(
    installed: Installed, env: dict[str, str], command: str, cwd: Path
) -> dict[str, Any]:
    """`celery inspect COMMAND --json` with the installed package's app: replies by node.

    Run from `cwd`: Celery imports its app from the working directory first (the checkout's
    root holds nothing that passes for `procexec`, which test_installed.py checks)."""
    celery = Path(installed.procexec).with_name("celery")
    result = subprocess.run(
        [str(celery), "-A", "procexec.workers.tasks", "inspect", command, "-j", "-t", "10"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    replies: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    return replies


def _bodies() -> list[dict[str, Any]]:
    failing = [{"fail_in": phase} for phase, count in FAIL_IN.items() for _ in range(count)]
    return [*failing, *({"log_lines": 1} for _ in range(RUNS - len(failing)))]


def _flower_tasks(flower: str, want: int, timeout: float = 120) -> dict[str, Any]:
    """Flower's tasks once it lists at least `want` of them, all finished."""
    deadline = time.monotonic() + timeout
    tasks: dict[str, Any] = {}
    with httpx2.Client(timeout=30, trust_env=False) as client:
        while time.monotonic() < deadline:
            response = client.get(f"{flower}/api/tasks", auth=AUTH)
            assert response.status_code == 200, response.text
            tasks = response.json()
            states = Counter(task.get("state") for task in tasks.values())
            if len(tasks) >= want and states["SUCCESS"] + states["FAILURE"] == len(tasks):
                return tasks
            time.sleep(1)
    pytest.fail(f"Flower listed {len(tasks)} tasks, {want} finished expected: {states}")


def test_200_runs_across_workers_a_loader_beat_and_flower(
    installed: Installed, broker: Broker, tmp_path: Path
) -> None:
    env = installed.env(tmp_path / "data", broker.url)
    procexec = installed.procexec
    api_port, flower_port = free_port(), free_port()

    def service(name: str, *argv: str) -> Service:
        return Service(name, [procexec, *argv], env=env, log_dir=tmp_path)

    api = service("api", "api", "--port", str(api_port))
    url = f"http://127.0.0.1:{api_port}{BASE_PATH}"
    services = [api]
    try:
        wait_http(api, url)  # the API makes the store
        token = _token(installed, env)
        workers = [
            service(name, "worker", "-n", f"{name}@%h", "-Q", "procexec", "--concurrency", "2")
            for name in WORKERS
        ]
        loader = service("loader", "worker", "-n", "loader@%h", "-Q", "loader", "-c", "1")
        beat = service("beat", "beat")
        flower = service(
            "flower",
            "flower",
            f"--port={flower_port}",
            "--address=127.0.0.1",
            f"--basic-auth={':'.join(AUTH)}",
        )
        services += [*workers, loader, beat, flower]
        for worker in (*workers, loader):
            wait_worker_ready(worker, timeout=120)
        flower.wait_for_output(r"Visit me at http", timeout=60)
        beat.wait_for_output(r"beat: Starting\.\.\.", timeout=60)
        flower_url = f"http://127.0.0.1:{flower_port}"
        # Flower asks for its login.
        with httpx2.Client(timeout=10, trust_env=False) as client:
            assert client.get(f"{flower_url}/api/tasks").status_code == 401

        # Celery's own options reached each worker.
        stats = _celery_inspect(installed, env, "stats", tmp_path)
        queues = _celery_inspect(installed, env, "active_queues", tmp_path)
        nodes = {node.split("@")[0]: node for node in stats}
        assert set(nodes) == {*WORKERS, "loader"}, sorted(stats)
        for name in WORKERS:
            assert stats[nodes[name]]["pool"]["max-concurrency"] == 2
            assert [queue["name"] for queue in queues[nodes[name]]] == ["procexec"]
        assert stats[nodes["loader"]]["pool"]["max-concurrency"] == 1
        assert [queue["name"] for queue in queues[nodes["loader"]]] == ["loader"]

        # 200 runs from several clients at once.
        bodies = _bodies()
        runs, docs = run_from_clients(url, token, bodies, CLIENTS, timeout=300)

        # Every run ran once, by its phase logs: each phase once, its line logged once.
        for execution_id, doc in docs.items():
            fail_in = runs[execution_id].get("fail_in")
            ran = PHASES[: PHASES.index(fail_in) + 1] if fail_in else PHASES
            assert [phase["name"] for phase in doc["phases"]] == ran, doc
            for phase in doc["phases"]:
                lines = [line.split(" ", 1)[1] for line in phase["log"]]
                own = [line for line in lines if f"{phase['name']} line 1 of 1" in line]
                assert len(own) == 1, (execution_id, phase)
                assert not any(line.startswith("info Resuming") for line in lines), phase
            if fail_in:
                assert doc["status"] == "failed", doc
                assert doc["message"].startswith(f"Failed in {fail_in}: RuntimeError"), doc
            else:
                assert doc["status"] == "success", doc

        # Flower: every run task and every LOAD task, by process name and worker.
        loads = RUNS - FAIL_IN["TRANSFORM"]
        tasks = _flower_tasks(flower_url, want=RUNS + loads)
        run_tasks = {i: t for i, t in tasks.items() if t["name"] == "procexec.run"}
        load_tasks = {i: t for i, t in tasks.items() if t["name"] == "procexec.load"}
        assert set(run_tasks) == set(runs)
        assert set(load_tasks) == {
            f"{i}:load" for i, body in runs.items() if body.get("fail_in") != "TRANSFORM"
        }
        for task in (*run_tasks.values(), *load_tasks.values()):
            assert "'process': 'DEMO'" in task["kwargs"], task
        spread = Counter(task["worker"].split("@")[0] for task in run_tasks.values())
        assert set(spread) == set(WORKERS), spread  # both workers ran runs
        assert {task["worker"] for task in load_tasks.values()} == {nodes["loader"]}
        failures = {i for i, t in tasks.items() if t["state"] == "FAILURE"}
        assert failures == {
            i if body["fail_in"] == "TRANSFORM" else f"{i}:load"
            for i, body in runs.items()
            if body.get("fail_in")
        }
        for task_id in failures:
            execution_id = task_id.removesuffix(":load")
            assert docs[execution_id]["message"] in tasks[task_id]["exception"]

        for running in services:
            assert running.alive(), running.describe()
    finally:
        stop_all(*services)
