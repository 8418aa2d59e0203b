"""Fault injection on real processes: workers, beat and API on a real Redis and a real SQLite file.

Each test gets a fresh data folder and a flushed Redis database (13 by default), starts what it
needs through `Cluster`, and has every process it started stopped (SIGTERM, then SIGKILL for its
whole process group) in teardown; the output of each is attached to the report of a failed test.
Without a reachable Redis the tests skip, unless `PROCEXEC_REQUIRE_REDIS=1`, where they fail.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from procexec.engine.plugins import load_registry
from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService
from procexec.workers.celery_app import celery_dispatch, make_celery
from tests.integration import harness
from tests.integration.harness import (
    PROCEXEC,
    TERMINAL,
    Service,
    attach_service_output,
    free_port,
    service_env,
    start_api,
    start_worker,
    stop_all,
    wait_http,
    wait_worker_ready,
)
from tests.shared_redis import shared_redis_url

#: the real Redis of this suite; its database is flushed before each test
REDIS_URL = shared_redis_url("PROCEXEC_TEST_FAULTS_REDIS_URL", 13)
#: seconds without a heartbeat before a run is taken for lost (heartbeats every 4/6 s)
LOST_RUN_TIMEOUT = 4.0
#: seconds after which a run still `triggered` is sent again
REDISPATCH_AFTER = 2.0


def require_redis(url: str = REDIS_URL) -> str:
    return harness.require_redis(url)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        harness.unavailable("redis-server is not installed: the broker-outage test starts its own")
    assert found is not None
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    attach_service_output(report, call)
    return report


class PrivateRedis:
    """A redis-server of this test alone, on a fixed port, that can be stopped and restarted."""

    def __init__(self, binary: str, log_dir: Path) -> None:
        self.binary = binary
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: Service | None = None

    def start(self, timeout: float = 20) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.log_dir)]
        self.server = Service("redis-server", argv, env=os.environ, log_dir=self.log_dir)
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if not self.server.alive():
                    self.server.fail("exited while starting")
                if time.monotonic() > deadline:
                    self.server.fail(f"did not answer PING within {timeout:g} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class Cluster:
    """What one fault-injection test runs: its data folder, broker, processes and a store view."""

    root: Path
    env: dict[str, str]
    settings: Settings
    store: ExecutionStore
    app: Celery
    services: list[Service] = field(default_factory=list)

    # --- processes -------------------------------------------------------------------------

    def worker(
        self,
        *,
        pool: str = "threads",
        concurrency: int = 2,
        wait: bool = True,
        queues: str | None = None,
    ) -> Service:
        worker = start_worker(
            self.env, self.root, pool=pool, concurrency=concurrency, wait=False, queues=queues
        )
        self.services.append(worker)
        if wait:
            wait_worker_ready(worker)
        return worker

    def beat(self, *, wait: bool = True) -> Service:
        beat = Service("beat", [PROCEXEC, "beat"], env=self.env, log_dir=self.root)
        self.services.append(beat)
        if wait:
            wait_beat_ready(beat)
        return beat

    def api(self, *, wait: bool = True) -> tuple[Service, str]:
        api, url = start_api(self.env, self.root, wait=False)
        self.services.append(api)
        if wait:
            wait_http(api, url)
        return api, url

    def stop(self) -> None:
        stop_all(*self.services)

    # --- executions ------------------------------------------------------------------------

    @property
    def triggers(self) -> TriggerService:
        registry = load_registry(self.settings)
        return TriggerService(self.store, registry, celery_dispatch(self.settings, self.app))

    def trigger(self, name: str, body: dict[str, Any] | None = None) -> str:
        doc = self.triggers.trigger(name, run_as="alice", environment="production", body=body)
        return str(doc["_id"])

    def record(self, name: str, body: dict[str, Any] | None = None) -> str:
        """Record an execution without sending its task."""
        doc = self.triggers.record(name, run_as="alice", environment="production", body=body)
        return str(doc["_id"])

    def dispatch(self, execution_id: str) -> None:
        """Send the run task of an execution, as the API and the housekeeper do."""
        process = self.doc(execution_id)["name"]
        celery_dispatch(self.settings, self.app)(execution_id, 0, process)

    def doc(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        assert doc is not None, execution_id
        return doc

    def wait_doc(
        self,
        execution_id: str,
        check: Callable[[dict[str, Any]], Any],
        what: str,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Poll the document until `check` holds; fail with the last one seen after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.doc(execution_id)
            if check(doc):
                return doc
            if time.monotonic() > deadline:
                pytest.fail(
                    f"execution {execution_id}: no {what} within {timeout:g} s; last seen: {doc}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def wait_terminal(self, execution_id: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_doc(
            execution_id, lambda doc: doc["status"] in TERMINAL, "terminal status", timeout
        )


def wait_beat_ready(beat: Service, timeout: float = 60) -> None:
    beat.wait_for_output(r"beat: Starting", timeout)


def phase(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((item for item in doc.get("phases", []) if item["name"] == name), None)


def logged(doc: dict[str, Any], name: str, text: str) -> int:
    """How many lines of phase `name` end with `text`."""
    found = phase(doc, name)
    return sum(line.endswith(f" {text}") for line in (found or {}).get("log", []))


def make_cluster(root: Path, broker_url: str) -> Cluster:
    data_dir = root / "data"
    env = service_env(
        data_dir,
        broker_url,
        PROCEXEC_LOST_RUN_TIMEOUT=f"{LOST_RUN_TIMEOUT:g}",
        PROCEXEC_REDISPATCH_AFTER=f"{REDISPATCH_AFTER:g}",
    )
    settings = Settings.from_env(env)
    data_dir.mkdir(parents=True)
    store = open_store(settings.store_url)
    return Cluster(root, env, settings, store, make_celery(settings))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on the shared Redis (its test database flushed)."""
    made = make_cluster(tmp_path, require_redis())
    try:
        yield made
    finally:
        made.stop()
        made.app.close()
        made.store.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server started for this test alone (it is stopped and restarted)."""
    server = PrivateRedis(redis_server_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def outage_cluster(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Cluster]:
    """A cluster whose broker is the private redis-server."""
    made = make_cluster(tmp_path, private_redis.url)
    try:
        yield made
    finally:
        made.stop()
        made.app.close()
        made.store.close()
