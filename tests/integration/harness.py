"""Real processes for the end-to-end tests: workers, the API, the CLI, and the brokers they use.

Every process started here writes its output to a file, is stopped with SIGTERM (then SIGKILL,
for its whole process group) in teardown, and has its output attached to the report of a test
that fails while it runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest

from tests.shared_redis import shared_redis_url

BIN = Path(sys.executable).parent
PROCEXEC = str(BIN / "procexec")
#: the real Redis of the Redis-broker variant; its database is flushed when a test module starts
REDIS_URL = shared_redis_url("PROCEXEC_TEST_REDIS_URL", 11)
#: short, so the tests see log lines soon after they are written
LOG_FLUSH_INTERVAL = "0.1"
BASE_PATH = "/service/process-exec"
TERMINAL = frozenset({"success", "warning", "failed"})
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def unavailable(message: str, required_by: str = "PROCEXEC_REQUIRE_REDIS") -> None:
    """Skip locally; fail when `required_by` is set (as in CI)."""
    if os.environ.get(required_by, "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message} (and {required_by} is set)", pytrace=False)
    pytest.skip(message)


def require_redis(url: str = REDIS_URL) -> str:
    """`url`, its database flushed; skips without Redis, fails if Redis is required."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        try:
            client.ping()
            client.flushdb()
        finally:
            client.close()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {url}: {exc}")
    return url


class PrivateRedis:
    """A `redis-server` of the test's own on a free port, nothing kept on disk; it can be
    stopped and started again on the same port, as an outage would."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.binary = str(binary)
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.service: Service | None = None

    def start(self) -> PrivateRedis:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.log_dir)]
        self.service = Service("redis", argv, env=os.environ, log_dir=self.log_dir)
        self.service.wait_for_output(r"Ready to accept connections", timeout=20)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


#: the real RabbitMQ of this machine
RABBITMQ_HOST = os.environ.get("PROCEXEC_TEST_RABBITMQ_HOST", "127.0.0.1:5672")


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of the test's own on the real RabbitMQ (guest/guest); its URL."""
    host, _, port = RABBITMQ_HOST.partition(":")
    try:
        socket.create_connection((host, int(port or 5672)), timeout=2).close()
    except OSError as exc:
        unavailable(f"RabbitMQ is not reachable at {RABBITMQ_HOST}: {exc}", REQUIRE_RABBITMQ)
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("rabbitmqctl is not installed (it makes the test's vhost)", REQUIRE_RABBITMQ)
    vhost = f"procexec-test-{uuid.uuid4().hex[:8]}"

    def rabbitmqctl(*args: str) -> None:
        result = subprocess.run(
            [str(ctl), *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stderr}"

    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


#: set (as in CI) to fail, not skip, the tests of the real RabbitMQ when it is not there
REQUIRE_RABBITMQ = "PROCEXEC_REQUIRE_RABBITMQ"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(data_dir: Path, broker_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a procexec process: this data folder and broker, nothing inherited."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROCEXEC_")}
    env.update(
        PROCEXEC_DATA_DIR=str(data_dir),
        PROCEXEC_LOG_FLUSH_INTERVAL=LOG_FLUSH_INTERVAL,
        PYTHONUNBUFFERED="1",
    )
    if broker_url:
        env["PROCEXEC_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `procexec ARGS` to completion."""
    return subprocess.run(
        [PROCEXEC, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def create_token(env: Mapping[str, str], user: str, scope: str | None = None) -> str:
    """`procexec token create`: checks that stdout is the token alone, on one line."""
    args = ["token", "create", "--user", user, *(["--scope", scope] if scope else [])]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"pe_[A-Za-z0-9_-]{40,}\n", result.stdout), repr(result.stdout)
    return result.stdout.strip()


class Service:
    """A long-running subprocess with its output in a file."""

    #: every service started in this session, for the reports of failing tests
    STARTED: ClassVar[list[Service]] = []

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd or log_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown can kill all of it
        )
        Service.STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 8000) -> str:
        text = self.output()
        return text if len(text) <= chars else "…" + text[-chars:]

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}, exit {self.proc.returncode}): {' '.join(self.argv)}"

    def fail(self, why: str) -> None:
        pytest.fail(f"{self.describe()}: {why}\n--- output ---\n{self.tail()}", pytrace=False)

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the output matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output(), re.MULTILINE)
            if match:
                return match
            if not self.alive():
                self.fail(f"exited before printing {pattern!r}")
            if time.monotonic() > deadline:
                self.fail(f"did not print {pattern!r} within {timeout:g} s")
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait, then SIGKILL the process group; returns the exit code."""
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.proc.wait(10)
        self._kill_group()  # whatever it left behind
        if self.stopped_at is None:
            self.stopped_at = time.time()
            self._log.close()
        return self.proc.returncode

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Stack:
    """One worker and one API sharing a data folder (SQLite store) and a broker."""

    root: Path
    data_dir: Path
    env: dict[str, str]
    url: str
    api: Service
    worker: Service


def stop_all(*services: Service, timeout: float = 20) -> None:
    """Stop several services at once (a worker's warm shutdown takes seconds)."""
    for service in services:
        service.terminate()
    for service in services:
        service.stop(timeout)


def start_worker(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    pool: str = "threads",
    concurrency: int = 2,
    wait: bool = True,
    queues: str | None = None,
) -> Service:
    """`procexec worker`; `queues` (`-Q`), else its default: the run and the loader queues."""
    node = f"procexec-test-{uuid.uuid4().hex[:8]}@%h"
    argv = [sys.executable, "-m", "procexec.cli", "worker", "--pool", pool]
    argv += ["--concurrency", str(concurrency), "--hostname", node]
    if queues is not None:
        argv.append(f"--queues={queues}")
    worker = Service("worker", argv, env=env, log_dir=log_dir)
    if wait:
        wait_worker_ready(worker)
    return worker


def wait_worker_ready(worker: Service, timeout: float = 60) -> None:
    worker.wait_for_output(r"@\S+ ready\.", timeout)


def start_api(env: Mapping[str, str], log_dir: Path, *, wait: bool = True) -> tuple[Service, str]:
    """`procexec api` on a free port; returns it and its base URL."""
    port = free_port()
    api = Service("api", [PROCEXEC, "api", "--port", str(port)], env=env, log_dir=log_dir)
    url = f"http://127.0.0.1:{port}{BASE_PATH}"
    if wait:
        wait_http(api, url)
    return api, url


def start_standalone(
    env: Mapping[str, str],
    log_dir: Path,
    procexec: str = PROCEXEC,
    cwd: Path | None = None,
    options: Sequence[str] = (),
) -> tuple[Service, str, str]:
    """`procexec standalone` on a free port (run in `cwd`, the log folder by default); returns
    it, its base URL (as printed, once it answers) and its admin token, read from the file the
    banner names (the banner shows the token's beginning only)."""
    port = free_port()
    standalone = Service(
        "standalone",
        [procexec, "standalone", "--port", str(port), *options],
        env=env,
        log_dir=log_dir,
        cwd=cwd,
    )
    url = standalone.wait_for_output(r"^  API:\s+(http://\S+)$", timeout=60)[1]
    token = read_banner_token(standalone)
    assert url == f"http://127.0.0.1:{port}{BASE_PATH}"
    wait_http(standalone, url)
    return standalone, url, token


#: the banner's token line: the token's beginning, then the file that holds it
BANNER_TOKEN = r"^  token:\s+(pe_[A-Za-z0-9_-]{5,})…?  \(user \S+, scope admin; kept in (.+)\)$"


def read_banner_token(standalone: Service) -> str:
    """The admin token of a standalone: read from the file its banner names, and checked
    against the beginning the banner shows."""
    shown, path = standalone.wait_for_output(BANNER_TOKEN, timeout=5).groups()
    token = Path(path).read_text().strip()
    assert token.startswith(shown), f"the banner shows {shown}…, the file holds another token"
    return token


def wait_http(service: Service, url: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until `url` (the build information, no auth) answers 200; returns its JSON."""
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=5, trust_env=False) as client:
        while True:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
            except httpx2.TransportError:
                pass
            if not service.alive():
                service.fail(f"exited before {url} answered")
            if time.monotonic() > deadline:
                service.fail(f"{url} did not answer within {timeout:g} s")
            time.sleep(0.1)


def api_client(url: str, token: str) -> httpx2.Client:
    return httpx2.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=15, trust_env=False
    )


def trigger(client: httpx2.Client, name: str, body: Mapping[str, Any] | None = None) -> str:
    """POST a run; checks the 202 and returns the execution id."""
    payload: dict[str, Any] = {"name": name}
    if body is not None:
        payload["body"] = dict(body)
    response = client.post("v1", json=payload)
    assert response.status_code == 202, response.text
    doc = response.json()
    assert doc["status"] == "triggered"
    assert response.headers["location"].endswith(f"/v1/{doc['_id']}")
    execution_id: str = doc["_id"]
    return execution_id


def wait_terminal(
    client: httpx2.Client,
    execution_id: str,
    *,
    timeout: float = 60,
    interval: float = 0.1,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll `v1/{id}` until the execution reaches a terminal status; returns it."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"v1/{execution_id}")
        assert response.status_code == 200, response.text
        doc = response.json()
        if on_poll is not None:
            on_poll(doc)
        if doc["status"] in TERMINAL:
            return doc
        time.sleep(interval)
    pytest.fail(f"execution {execution_id} not finished after {timeout:g} s; last seen: {doc}")


def processes_with_env(name: str, value: str) -> list[int]:
    """The pids of live processes (other than this one) whose environment has `name=value`."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def attach_service_output(report: pytest.TestReport, call: pytest.CallInfo[Any]) -> None:
    """Add the output of every service that ran during a failed test phase to its report."""
    if not report.failed:
        return
    for service in Service.STARTED:
        if service.started_at <= call.stop and (
            service.stopped_at is None or service.stopped_at >= call.start
        ):
            report.sections.append((f"output of {service.describe()}", service.tail()))


def wait_stored_end(store: Any, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the store until the execution is terminal (or `timeout` passes); its document."""
    deadline = time.monotonic() + timeout
    while True:
        doc = store.get(execution_id)
        assert doc is not None, f"execution {execution_id} is not in the store"
        if doc["status"] in TERMINAL or time.monotonic() > deadline:
            result: dict[str, Any] = doc
            return result
        time.sleep(0.1)
