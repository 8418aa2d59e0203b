"""Real beat processes: `procexec beat` and a worker on the real Redis, SQLite in tmp_path.

Every process started here writes its output to a file, runs in its own process group, is
stopped in teardown (SIGTERM, then SIGKILL for the group), and has its output attached to the
report of a failing test. Without Redis these tests skip, unless PROCEXEC_REQUIRE_REDIS=1, when
they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.query import parse_query
from procexec.engine.store.base import ProcessState
from procexec.engine.store.sqlite import SQLiteStore
from tests.integration import harness
from tests.shared_redis import shared_redis_url

PROCEXEC = str(Path(sys.executable).parent / "procexec")
#: the real Redis; this database is flushed when each test starts
REDIS_URL = shared_redis_url("PROCEXEC_TEST_BEAT_REDIS_URL", 12)
ROOT = Path(__file__).resolve().parents[2]


def require_redis() -> str:
    return harness.require_redis(REDIS_URL)


class Proc:
    """A long-running procexec subprocess with its output in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PROCEXEC, *args],
            env=env,
            cwd=log_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown can kill all of it
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        state = "running" if self.alive() else f"exit {self.proc.returncode}"
        return f"{self.name} (pid {self.proc.pid}, {state}): procexec {' '.join(self.args)}"

    def wait_for_output(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output(), re.MULTILINE):
            if not self.alive():
                pytest.fail(f"{self.describe()} exited before printing {pattern!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.describe()} did not print {pattern!r} within {timeout:g} s")
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, wait, then SIGKILL the process group."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()


@dataclass
class Deployment:
    """A data folder, a module of processes, the environment of procexec processes, and the
    processes started on it."""

    root: Path
    data_dir: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    _store: SQLiteStore | None = None

    def start(self, name: str, *args: str) -> Proc:
        proc = Proc(name, list(args), self.env, self.root)
        self.procs.append(proc)
        return proc

    def beat(self, name: str = "beat") -> Proc:
        return self.start(name, "beat", "--log-level", "INFO")

    def worker(self) -> Proc:
        node = f"beat-test-{uuid.uuid4().hex[:8]}@%h"
        return self.start(
            "worker", "worker", "--pool", "threads", "--concurrency", "2", "--hostname", node
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `procexec ARGS` to completion."""
        return subprocess.run(
            [PROCEXEC, *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def process_list(self) -> dict[str, dict[str, Any]]:
        """`procexec process list --json`, by process name."""
        result = self.cli("process", "list", "--json")
        assert result.returncode == 0, result.stderr
        return {item["name"]: item for item in json.loads(result.stdout)}

    @property
    def store(self) -> SQLiteStore:
        if self._store is None:
            self._store = SQLiteStore(self.data_dir / "procexec.db")
        return self._store

    def executions(self, name: str) -> list[dict[str, Any]]:
        docs, _ = self.store.list(parse_query([("name", name), ("_limit", "-1")]))
        return docs

    def states(self) -> dict[str, ProcessState]:
        return self.store.process_states()

    def rewind(self, name: str, last_fire: str) -> None:
        """Set a process's last handled fire time, as if the beats had stopped back then."""
        path = self.data_dir / "procexec.db"
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
            changed = conn.execute(
                "UPDATE processes SET last_fire = ? WHERE name = ?", (last_fire, name)
            ).rowcount
        assert changed == 1, f"no schedule state for {name}"

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.stop()
        if self._store is not None:
            self._store.close()

    def outputs(self) -> str:
        parts = []
        for proc in self.procs:
            text = proc.output() if proc.log_path.exists() else ""
            if len(text) > 12000:
                text = "…" + text[-12000:]
            parts.append(f"--- {proc.describe()} ---\n{text}")
        return "\n".join(parts)


class Deployments:
    """Builds deployments around modules of processes; stops what they started."""

    def __init__(self, root: Path, broker_url: str) -> None:
        self.root = root
        self.broker_url = broker_url
        self.made: list[Deployment] = []

    def __call__(self, source: str) -> Deployment:
        """A deployment whose processes are those of `source` (a module's text, dedented)."""
        module = f"beat_test_processes_{uuid.uuid4().hex[:8]}"
        modules = self.root / "modules"
        modules.mkdir(exist_ok=True)
        (modules / f"{module}.py").write_text(textwrap.dedent(source))
        env = {key: value for key, value in os.environ.items() if not key.startswith("PROCEXEC_")}
        path = [str(modules), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            PROCEXEC_DATA_DIR=str(self.root / "data"),
            PROCEXEC_BROKER_URL=self.broker_url,
            PROCEXEC_PROCESSES=module,
            PROCEXEC_EXAMPLES="false",
            PROCEXEC_LOG_FLUSH_INTERVAL="0.1",
            PYTHONPATH=os.pathsep.join(path),
            PYTHONUNBUFFERED="1",
        )
        created = Deployment(self.root, self.root / "data", env)
        self.made.append(created)
        return created

    def outputs(self) -> str:
        return "\n".join(created.outputs() for created in self.made)

    def stop_all(self) -> None:
        for created in self.made:
            created.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    deployments = getattr(item, "funcargs", {}).get("deployments")
    if report.failed and isinstance(deployments, Deployments):
        report.sections.append(("procexec processes", deployments.outputs()))
    return report


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Deployments]:
    """Deployments on the real Redis (its test database flushed) and a SQLite file in tmp_path."""
    made = Deployments(tmp_path, require_redis())
    try:
        yield made
    finally:
        made.stop_all()
