"""What bench/throughput.py and bench/latency.py share: a work folder and the processes started
in it (a private redis-server, workers, an API), each in a session of its own and all ended,
the folder removed, when the benchmark ends, also on Ctrl-C or SIGTERM; a worker's whole
process tree's CPU time read from /proc; and the environment of a service on each broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import faults  # noqa: E402  (bench/, beside this script)
from faults import free_port  # noqa: E402
from floor_app import QUEUE as FLOOR_QUEUE  # noqa: E402

from procexec.engine.domain import TERMINAL  # noqa: E402
from procexec.workers.celery_app import QUEUE  # noqa: E402

#: the queue a worker starts on, empty: it consumes the real ones once it is up (`consume`), so
#: that its start is neither timed nor counted in its CPU time
IDLE_QUEUE = "bench-idle"
MODES = ("redis", "embedded")
TICKS = os.sysconf("SC_CLK_TCK")

__all__ = ["FLOOR_QUEUE", "QUEUE", "TERMINAL", "free_port"]


def _on_sigterm(*_: Any) -> None:
    raise SystemExit(143)


class Lab:
    """A temporary folder and the processes started in it; `with Lab(...) as lab:` ends them
    all (SIGKILL to each one's process group) and removes the folder, whatever ends the
    block (Ctrl-C, SIGTERM, an error)."""

    def __init__(self, prefix: str) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=prefix))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.redis: faults.Cluster | None = None
        self.started = 0

    def __enter__(self) -> Lab:
        signal.signal(signal.SIGTERM, _on_sigterm)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in list(self.processes):
            self.stop(process)
        if self.redis is not None:
            self.redis.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.started += 1
        with open(self.work / f"{name}-{self.started}.log", "wb") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.processes.remove(process)

    def redis_url(self) -> str:
        """A private redis-server's URL (started at the first call), as bench/faults.py's."""
        if self.redis is None:
            cluster = faults.Cluster(self.work / "redis", 0, 0, 60.0)
            cluster.work.mkdir()
            cluster.start_redis()
            self.redis = cluster
        return f"redis://127.0.0.1:{self.redis.redis_port}/0"

    def flush_redis(self) -> None:
        if self.redis is not None:
            import redis

            with redis.Redis(port=self.redis.redis_port) as client:
                client.flushall()

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir()
        return path


def service_env(data: Path, broker: str | None, hand_over: bool) -> dict[str, str]:
    """A service's environment: the caller's, its PROCEXEC_* settings replaced by these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCEXEC_")}
    env["PROCEXEC_DATA_DIR"] = str(data)
    env["PROCEXEC_LOADER_QUEUE"] = "loader" if hand_over else ""
    if broker is not None:
        env["PROCEXEC_BROKER_URL"] = broker
    return env


def procexec_worker(
    pool: str, concurrency: int, queues: str = IDLE_QUEUE, *extra: str
) -> list[str]:
    return [
        sys.executable, "-m", "procexec.cli", "worker", "--log-level", "WARNING",
        f"--pool={pool}", f"--concurrency={concurrency}", f"--queues={queues}", *extra,
    ]  # fmt: skip


def floor_worker(pool: str, concurrency: int, queues: str = IDLE_QUEUE, *extra: str) -> list[str]:
    """The floor's worker, with the options `procexec worker` adds (no mingle, no gossip)."""
    return [
        sys.executable, "-m", "celery", "-A", "floor_app", "worker", "--loglevel=WARNING",
        "--without-mingle", "--without-gossip", f"--pool={pool}",
        f"--concurrency={concurrency}", f"--queues={queues}", *extra,
    ]  # fmt: skip


def floor_env(env: dict[str, str], config: str, stamps: Path) -> dict[str, str]:
    return {**env, "BENCH_FLOOR_CONFIG": config, "BENCH_STAMPS": str(stamps),
            "PYTHONPATH": str(BENCH)}  # fmt: skip


def wait_ready(
    app: Any, process: subprocess.Popen[bytes], node: str | None = None, timeout: float = 90.0
) -> None:
    """Until the worker (`node`, or the only one on this broker) answers a ping."""
    deadline = time.monotonic() + timeout
    while not app.control.ping(timeout=0.5, destination=[node] if node else None):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start (its log is in the work folder)")


def consume(app: Any, queues: list[str]) -> None:
    """The (ready) worker starts consuming `queues`."""
    for queue in queues:
        replies = app.control.add_consumer(queue, reply=True, timeout=10)
        if not replies:
            raise RuntimeError(f"the worker did not take the queue {queue}")


def tree_cpu(session: int) -> float:
    """Seconds of CPU (user + system, with reaped children's) of the processes of a session."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session:  # field 6, the session
            ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / TICKS


def wait_api(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the API did not start (its log is in the work folder)"
                ) from None
            time.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
