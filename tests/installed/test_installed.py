"""The installed wheel runs on each broker it names: `procexec api`, `worker` and `beat` as
separate processes, and `procexec standalone`, each on a private Redis and on the real RabbitMQ."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.installed.conftest import ROOT, Broker, Installed
from tests.integration.harness import (
    BASE_PATH,
    PrivateRedis,
    Service,
    api_client,
    free_port,
    start_standalone,
    stop_all,
    trigger,
    wait_http,
    wait_terminal,
    wait_worker_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def _readyz(url: str) -> httpx2.Response:
    root = url.removesuffix(BASE_PATH)
    with httpx2.Client(timeout=10, trust_env=False) as client:
        return client.get(f"{root}/readyz")


def _wait_readyz(url: str, status: int, timeout: float = 30) -> dict[str, Any]:
    """Poll `/readyz` until it answers `status`; its body."""
    deadline = time.monotonic() + timeout
    while True:
        response = _readyz(url)
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz answered {response.status_code} {response.text}, not {status}")
        time.sleep(0.2)


def _run_ecb_fx(url: str, token: str) -> None:
    with api_client(url, token) as client:
        doc = wait_terminal(client, trigger(client, "ECB_FX"), timeout=90)
    assert doc["status"] == "success", doc
    assert doc["loaderMessage"] == "Updated 32 series for 2021-07-01"


def _token(installed: Installed, env: dict[str, str]) -> str:
    result = subprocess.run(
        [installed.procexec, "token", "create", "--user", "alice"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_api_worker_and_beat_as_separate_processes(
    installed: Installed, broker: Broker, tmp_path: Path
) -> None:
    env = installed.env(tmp_path / "data", broker.url)
    port = free_port()
    procexec = installed.procexec
    api = Service("api", [procexec, "api", "--port", str(port)], env=env, log_dir=tmp_path)
    worker = Service("worker", [procexec, "worker"], env=env, log_dir=tmp_path)
    beat = Service("beat", [procexec, "beat"], env=env, log_dir=tmp_path)
    url = f"http://127.0.0.1:{port}{BASE_PATH}"
    try:
        wait_worker_ready(worker)
        assert wait_http(api, url)["broker"] == broker.kind
        token = _token(installed, env)  # the API has made the store
        beat.wait_for_output(r"beat: Starting\.\.\.", timeout=60)
        ready = _wait_readyz(url, 200)
        assert ready["checks"]["broker"] == {"ready": True}
        assert ready["checks"]["store"] == {"ready": True}

        _run_ecb_fx(url, token)
        assert re.search(r"Connected to (redis|amqp)://", worker.output())

        if broker.redis is not None:  # an outage of the broker, seen by /readyz and survived
            # Not while the worker holds a message (ECB_FX's follower): kombu 5.7's Redis
            # transport can then crash the worker as it closes its channel (`'NoneType' object
            # has no attribute 'hostname'` in restore_unacked), a defect of its own.
            with api_client(url, token) as client:
                [follower] = client.get("v1", params={"name": "ECB_FX_CROSS"}).json()
                assert wait_terminal(client, follower["_id"])["status"] == "success"
            broker.redis.stop()
            down = _wait_readyz(url, 503)
            assert down["error"].startswith("not ready: broker: "), down
            assert down["checks"]["store"] == {"ready": True}
            broker.redis.start()
            _wait_readyz(url, 200)
            _run_ecb_fx(url, token)  # the worker reconnected by itself
        for service in (api, worker, beat):
            assert service.alive(), service.describe()
    finally:
        stop_all(api, worker, beat)


def test_the_installed_build_is_stamped(installed: Installed, commit: str, tmp_path: Path) -> None:
    """The wheel carries the commit it was built from; the installed API reports it without a
    checkout to ask (its package sits in site-packages, far from any .git)."""
    env = installed.env(tmp_path / "data")
    port = free_port()
    api = Service(
        "api", [installed.procexec, "api", "--port", str(port)], env=env, log_dir=tmp_path
    )
    try:
        info = wait_http(api, f"http://127.0.0.1:{port}{BASE_PATH}")
    finally:
        api.stop()
    assert info["commit"] == commit
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["buildTime"]), info


def _standalone_runs_ecb_fx(
    installed: Installed, env: dict[str, str], tmp_path: Path, broker: str, cwd: Path | None = None
) -> None:
    """`procexec standalone` (run in `cwd`) on `broker`: ready with its worker and beat, and
    ECB_FX triggered through it ends `success`; then stopped."""
    standalone, url, token = start_standalone(env, tmp_path, installed.procexec, cwd=cwd)
    try:
        assert wait_http(standalone, url)["broker"] == broker
        ready = _wait_readyz(url, 200, timeout=60)
        assert set(ready["checks"]["children"]) == {"worker", "beat"}
        _run_ecb_fx(url, token)
        assert standalone.alive()
    finally:
        assert standalone.stop() in (0, 143), standalone.tail()


def test_standalone(installed: Installed, broker: Broker, tmp_path: Path) -> None:
    env = installed.env(tmp_path / "data", broker.url)
    _standalone_runs_ecb_fx(installed, env, tmp_path, broker.kind)


@pytest.fixture(params=["checkout-root", "empty-folder"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The working directory a user runs the installed commands from: the checkout they just
    installed it from (its root holds engine/, api/, workers/ and examples/), or an empty one."""
    if request.param == "checkout-root":
        return ROOT
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def _untracked(folder: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(listed.splitlines())


def test_installed_python_imports_itself_from_any_folder(installed: Installed, where: Path) -> None:
    """`python -c` and `python -m` put the working directory first on sys.path: no folder there
    may pass for the installed package, nor for a part of it."""
    probe = "import procexec.cli, procexec.engine, procexec.workers.tasks as m; print(m.__file__)"
    done = subprocess.run(
        [installed.python, "-c", probe], cwd=where, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.venv), done.stdout


def test_standalone_embedded_from_any_folder(
    installed: Installed, where: Path, tmp_path: Path
) -> None:
    """The README's path as a user takes it: `pip install .` in the clone, then `procexec
    standalone` where they stand (the embedded store and broker), and nothing written there."""
    before = _untracked(ROOT)
    env = installed.env(tmp_path / "data")
    _standalone_runs_ecb_fx(installed, env, tmp_path, "embedded", cwd=where)
    assert _untracked(ROOT) == before
    if where != ROOT:
        assert list(where.iterdir()) == []


def test_api_worker_and_beat_on_redis_from_any_folder(
    installed: Installed, where: Path, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path / "redis").start()
    env = installed.env(tmp_path / "data", redis.url)
    port = free_port()
    procexec = installed.procexec
    services = [
        Service(name, [procexec, *argv], env=env, log_dir=tmp_path, cwd=where)
        for name, argv in (
            ("api", ["api", "--port", str(port)]),
            ("worker", ["worker"]),
            ("beat", ["beat"]),
        )
    ]
    api, worker, beat = services
    url = f"http://127.0.0.1:{port}{BASE_PATH}"
    try:
        wait_worker_ready(worker)
        assert wait_http(api, url)["broker"] == "redis"
        token = _token(installed, env)
        beat.wait_for_output(r"beat: Starting\.\.\.", timeout=60)
        _run_ecb_fx(url, token)
        assert all(service.alive() for service in services)
    finally:
        stop_all(*services)
        redis.stop()
    if where != ROOT:
        assert list(where.iterdir()) == []
