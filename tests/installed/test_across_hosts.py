"""From the installed wheel, as on several machines: the broker, the API, two workers, the
loader and the beat each on a host of its own (a network namespace, tests/installed/netns.py),
every connection crossing a network; Flower and the clients on the machine itself. The private
`redis-server` listens on its host's address alone, so nothing reaches it over a loopback.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from tests.installed.conftest import Installed, run_from_clients
from tests.installed.netns import Network
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

RUNS = 40
AUTH = ("ops", "hosts-pass")
WORKERS = ("w1", "w2")


def test_runs_cross_a_network_between_broker_api_workers_and_loader(
    installed: Installed, tmp_path: Path
) -> None:
    redis_server = shutil.which("redis-server")
    assert redis_server is not None, "redis-server is not installed"
    services: list[Service] = []
    with Network() as network:
        broker = network.host("broker")
        api_host = network.host("api")
        hosts = {name: network.host(name) for name in (*WORKERS, "loader", "beat")}
        env = installed.env(tmp_path / "data", f"redis://{broker}:6379/0")

        def service(name: str, host: str, argv: list[str]) -> Service:
            started = Service(name, network.on(host, argv), env=env, log_dir=tmp_path)
            services.append(started)
            return started

        try:
            redis_argv = [redis_server, "--bind", broker, "--port", "6379", "--save", ""]
            redis_argv += ["--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path)]
            service("redis", "broker", redis_argv).wait_for_output(
                r"Ready to accept connections", timeout=20
            )
            port = free_port()
            api = service(
                "api", "api", [installed.procexec, "api", "--host", api_host, "--port", str(port)]
            )
            url = f"http://{api_host}:{port}{BASE_PATH}"
            assert wait_http(api, url)["broker"] == "redis"
            token = _token(installed, env)
            procexec = installed.procexec
            workers = [
                service(
                    name,
                    name,
                    [procexec, "worker", "-n", f"{name}@%h", "-Q", "procexec", "-c", "2"],
                )
                for name in WORKERS
            ]
            loader = service(
                "loader",
                "loader",
                [procexec, "worker", "-n", "loader@%h", "-Q", "loader", "-c", "1"],
            )
            service("beat", "beat", [procexec, "beat"])
            flower_port = free_port()
            flower = Service(
                "flower",
                [
                    procexec,
                    "flower",
                    f"--port={flower_port}",
                    "--address=127.0.0.1",
                    f"--basic-auth={':'.join(AUTH)}",
                ],
                env=env,
                log_dir=tmp_path,
            )
            services.append(flower)
            for worker in (*workers, loader):
                wait_worker_ready(worker, timeout=120)
            flower.wait_for_output(r"Visit me at http", timeout=60)

            bodies: list[dict[str, Any]] = [{"fail_in": "LOAD"}, {"fail_in": "LOAD"}]
            bodies += [{"log_lines": 1} for _ in range(RUNS - len(bodies))]

            runs, docs = run_from_clients(url, token, bodies, 2, timeout=180)
            for execution_id, doc in docs.items():
                expected = "failed" if runs[execution_id].get("fail_in") else "success"
                assert doc["status"] == expected, doc
                assert [p["name"] for p in doc["phases"]] == [
                    "EXTRACT",
                    "TRANSFORM",
                    "SEND",
                    "LOAD",
                ]
                for phase in doc["phases"]:
                    own = [line for line in phase["log"] if f"{phase['name']} line 1 of 1" in line]
                    assert len(own) == 1, (execution_id, phase)  # ran once

            # Every process reached the broker from its own host's address.
            clients = redis.Redis(host=broker, port=6379).client_list()
            addresses = {client["addr"].rsplit(":", 1)[0] for client in clients}
            assert {api_host, hosts["w1"], hosts["w2"], hosts["loader"]} <= addresses, addresses

            # Flower (on the machine) saw which host's worker ran what.
            deadline = time.monotonic() + 60
            with httpx2.Client(timeout=30, trust_env=False) as client:
                while True:
                    tasks = client.get(
                        f"http://127.0.0.1:{flower_port}/api/tasks", auth=AUTH
                    ).json()
                    done = [t for t in tasks.values() if t.get("state") in ("SUCCESS", "FAILURE")]
                    if len(done) >= 2 * RUNS or time.monotonic() > deadline:
                        break
                    time.sleep(1)
            runs_by_worker = Counter(
                t["worker"].split("@")[0] for t in tasks.values() if t["name"] == "procexec.run"
            )
            assert set(runs_by_worker) == set(WORKERS), runs_by_worker
            loads = [t for t in tasks.values() if t["name"] == "procexec.load"]
            assert len(loads) == RUNS
            assert {t["worker"].split("@")[0] for t in loads} == {"loader"}
            assert sum(t["state"] == "FAILURE" for t in loads) == 2
            for running in services:
                assert running.alive(), running.describe()
        finally:
            stop_all(*reversed(services))
