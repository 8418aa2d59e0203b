"""The product as users install it: the wheel built from this tree and installed alone, without
the test extras, into a fresh virtual environment (one for the whole session), and run on the
real brokers from there.

A suite run in the development environment cannot see a dependency that only the test extras
bring: the wheel installed alone once could not reach Redis (kombu's Redis transport needs
`packaging`, which the test tools had installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    PrivateRedis,
    api_client,
    attach_service_output,
    rabbitmq_vhost,
    trigger,
    wait_terminal,
)

ROOT = Path(__file__).resolve().parents[2]
#: modules of the test extras that the installed product must do without
TEST_ONLY = ("pytest", "mongomock", "httpx2", "hypothesis", "schemathesis", "odsl")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    attach_service_output(report, call)
    return report


def completed(
    argv: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A command run to its end (at most 10 minutes), its output kept, whatever its status."""
    return subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = completed(list(argv), cwd, env)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    return result.stdout


def _source_copy(target: Path) -> Path:
    """The files of this tree that git would commit (tracked, or new and not ignored), so that
    the wheel is built from what a clone has: no stale `build/`, no local leftovers."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment holding the wheel alone."""

    venv: Path
    #: the wheel it was installed from
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def procexec(self) -> str:
        return str(self.venv / "bin" / "procexec")

    def env(self, data_dir: Path, broker_url: str | None = None, **extra: str) -> dict[str, str]:
        """A procexec process's environment: this venv first on PATH, nothing of the work tree
        or the test environment (PYTHONPATH, VIRTUAL_ENV, PROCEXEC_*) inherited."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PROCEXEC_", "PYTHON")) and key != "VIRTUAL_ENV"
        }
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv),
            PROCEXEC_DATA_DIR=str(data_dir),
            PROCEXEC_LOG_FLUSH_INTERVAL="0.1",
            PYTHONUNBUFFERED="1",
        )
        if broker_url:
            env["PROCEXEC_BROKER_URL"] = broker_url
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel of this tree, installed without extras into a new virtual environment."""
    root = tmp_path_factory.mktemp("installed")
    source = _source_copy(root / "source")
    # Built from the copy; the commit it stamps (procexec/_stamp.py) is this checkout's.
    build_env = {**os.environ, "GIT_DIR": str(ROOT / ".git")}
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        root / "dist",
        source,
        env=build_env,
    )
    wheels = sorted((root / "dist").glob("procexec-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        tops = {name.split("/")[0] for name in names}
    # The dashboard's page, scripts and styles (api/web/, package-data) are in it, every one.
    web = {f"procexec/api/web/{path.name}" for path in (ROOT / "api" / "web").iterdir()}
    assert web and web <= names, sorted(web - names)
    # One name in site-packages: the package and its metadata, nothing generic beside them.
    assert {top for top in tops if not top.endswith(".dist-info")} == {"procexec"}, tops
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv)
    product = Installed(venv, wheels[0])
    _run(
        product.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheels[0]
    )
    _run(product.python, "-m", "pip", "check")
    # It runs from site-packages, with none of the test extras beside it.
    probe = (
        "import importlib.util, json, procexec.engine, procexec.api, procexec.workers;"
        "found = lambda names: [m for m in names if importlib.util.find_spec(m)];"
        f"print(json.dumps([procexec.engine.__file__, found({TEST_ONLY!r}), "
        "found(('engine', 'api', 'workers', 'examples'))]))"
    )
    where, extras, generic = json.loads(_run(product.python, "-c", probe, cwd=root))
    assert Path(where).is_relative_to(venv), where
    assert extras == [], f"the fresh environment has test modules: {extras}"
    assert generic == [], f"generic top-level names importable: {generic}"
    assert importlib.util.find_spec("pytest") is not None  # while this one does
    return product


@pytest.fixture(scope="session")
def commit() -> str:
    """The commit this checkout is at (what the wheel's build stamped)."""
    return _run("git", "rev-parse", "HEAD", cwd=ROOT).strip()


@dataclass
class Broker:
    kind: str
    url: str
    #: the private Redis, which a test may stop and start again; None on RabbitMQ
    redis: PrivateRedis | None = None


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own: a private `redis-server`, or a vhost on the real RabbitMQ."""
    if request.param == "redis":
        redis = PrivateRedis(tmp_path / "redis").start()
        try:
            yield Broker("redis", redis.url, redis)
        finally:
            redis.stop()
    else:
        with rabbitmq_vhost() as url:
            yield Broker("amqp", url)


def run_from_clients(
    url: str, token: str, bodies: list[dict[str, Any]], clients: int, timeout: float
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """DEMO triggered with each of `bodies`, by `clients` clients at once; each run's body and
    its document once it has ended, by execution id."""

    def client_triggers(share: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        with api_client(url, token) as client:
            return [(trigger(client, "DEMO", body), body) for body in share]

    with ThreadPoolExecutor(clients) as pool:
        shares = pool.map(client_triggers, [bodies[i::clients] for i in range(clients)])
        runs = dict(pair for share in shares for pair in share)
    assert len(runs) == len(bodies)
    with api_client(url, token) as client:
        docs = {i: wait_terminal(client, i, timeout=timeout) for i in runs}
    return runs, docs
