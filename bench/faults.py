"""Fault injection: no lost, no stuck, no doubled runs while workers die and Redis restarts.

Starts a private redis-server (so that it can be stopped), an API, a beat (which runs the
housekeeping) and several workers, all real processes; triggers a few hundred DEMO runs over
HTTP; and meanwhile SIGKILLs workers at random moments (restarting a replacement each time),
stops and restarts Redis, and sends duplicate task messages. Then it waits for every run to end
and prints one line of figures:

    faults: accepted=300 terminal=300 success=300 failed=0 stuck=0 doubled=0 ...

`stuck` counts runs not finished once the lost-run timeout has passed after the last fault;
`doubled` counts phases that ran twice at once (DEMO's `guard` lock files). Run it with
`python bench/faults.py` (about three minutes on two cores); `--help` lists the knobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TERMINAL = {"success", "warning", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """The processes under test, each in its own process group, logs in the work folder."""

    def __init__(self, work: Path, workers: int, concurrency: int, lost_timeout: float) -> None:
        self.work = work
        self.redis_port = free_port()
        self.api_port = free_port()
        self.concurrency = concurrency
        self.env = {
            **os.environ,
            "PROCEXEC_DATA_DIR": str(work / "data"),
            "PROCEXEC_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PROCEXEC_LOST_RUN_TIMEOUT": str(lost_timeout),
            "PROCEXEC_REDISPATCH_AFTER": str(lost_timeout),
            "PROCEXEC_LOG_FLUSH_INTERVAL": "0.2",
            "PYTHONPATH": str(ROOT),
        }
        self.redis: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.initial_workers = workers

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.work / f"{name}-{self.started}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def procexec(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, sys.executable, "-m", "procexec.cli", *args)

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("faults: needs redis-server (apt-get install redis-server)")
        self.redis = self._spawn(
            "redis",
            server,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.terminate()
        self.redis.wait(10)
        self.redis = None

    def start_worker(self) -> None:
        self.workers.append(
            self.procexec(
                "worker",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(self.concurrency),
                "--log-level",
                "WARNING",
            )
        )

    def kill_random_worker(self, rng: random.Random) -> None:
        victim = self.workers.pop(rng.randrange(len(self.workers)))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.start_worker()

    def start(self) -> None:
        self.start_redis()
        self.others.append(self.procexec("api", "api", "--port", str(self.api_port)))
        self.others.append(self.procexec("beat", "beat", "--log-level", "WARNING"))
        for _ in range(self.initial_workers):
            self.start_worker()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url(""), timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the API did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api_port}/service/process-exec{path}"

    def stop(self) -> None:
        for process in [*self.workers, *self.others, *([self.redis] if self.redis else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def post(cluster: Cluster, token: str, body: dict[str, Any]) -> str | None:
    request = urllib.request.Request(
        cluster.url("/v1"),
        data=json.dumps({"name": "DEMO", "body": body}).encode(),
        headers={"Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status == 202:
                return str(json.load(response)["_id"])
    except (urllib.error.URLError, OSError):
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="DEMO runs to trigger")
    parser.add_argument("--workers", type=int, default=3, help="workers running at once")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--kills", type=int, default=24, help="workers to SIGKILL")
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--duplicates", type=int, default=60, help="duplicate task messages")
    parser.add_argument("--lost-timeout", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    from procexec.engine.settings import Settings
    from procexec.engine.store import open_store
    from procexec.engine.tokens import create_token

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="procexec-faults-"))
    cluster = Cluster(work, args.workers, args.concurrency, args.lost_timeout)
    guard = work / "data" / "guards" / "faults"  # DEMO's lock files: a name under the data folder
    began = time.monotonic()
    cluster.start()
    settings = Settings.from_env(cluster.env)
    store = open_store(settings.store_url)
    token = create_token(store, "faults")

    accepted: list[str] = []
    refused = 0
    lock = threading.Lock()

    def trigger(_: int) -> None:
        nonlocal refused
        body = {"sleep": round(rng.uniform(0.2, 1.2), 2), "log_lines": 3, "guard": "faults"}
        execution_id = post(cluster, token, body)
        with lock:
            if execution_id:
                accepted.append(execution_id)
            else:
                refused += 1

    # Spread the triggers over the chaos: a pool of callers, paced.
    pacing = 0.12
    chaos_done = threading.Event()
    kills = restarts = duplicates = 0

    def chaos() -> None:
        nonlocal kills, restarts, duplicates
        from procexec.workers.celery_app import celery_dispatch

        dispatch = celery_dispatch(settings)
        span = args.runs * pacing + 10
        moments = sorted(
            [("kill", rng.uniform(2, span)) for _ in range(args.kills)]
            + [
                ("redis", span * (n + 1) / (args.redis_restarts + 1))
                for n in range(args.redis_restarts)
            ]
            + [("dup", rng.uniform(2, span)) for _ in range(args.duplicates)],
            key=lambda item: item[1],
        )
        start = time.monotonic()
        for kind, moment in moments:
            time.sleep(max(0.0, start + moment - time.monotonic()))
            if kind == "kill":
                cluster.kill_random_worker(rng)
                kills += 1
            elif kind == "redis":
                cluster.stop_redis()
                time.sleep(3)
                cluster.start_redis()
                restarts += 1
            else:
                with lock:
                    candidates = accepted[-40:]
                if candidates:
                    try:
                        dispatch(rng.choice(candidates), 0, "DEMO")
                        duplicates += 1
                    except Exception:  # Redis is down at this moment: try another later
                        pass
        chaos_done.set()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for number in range(args.runs):
            pool.submit(trigger, number)
            time.sleep(pacing)
    chaos_thread.join()
    last_fault = time.monotonic()

    # Wait for every accepted run to end; once the lost-run timeout (and the redispatch
    # interval) have passed after the last fault, whatever has not ended is stuck.
    settle = max(120.0, 6 * args.lost_timeout)
    statuses: dict[str, str] = {}
    while True:
        statuses = {i: (store.get(i) or {}).get("status", "missing") for i in accepted}
        if all(status in TERMINAL for status in statuses.values()):
            break
        if time.monotonic() - last_fault > settle:
            break
        time.sleep(1)
    wall = time.monotonic() - began

    terminal = sum(status in TERMINAL for status in statuses.values())
    success = sum(status == "success" for status in statuses.values())
    failed = sum(status == "failed" for status in statuses.values())
    stuck = len(accepted) - terminal
    doubled = len(list(guard.glob("*.overlap")))
    resumed = sum(1 for i in accepted if (store.get_meta(i).get("recoveries") or 0) > 0)
    cluster.stop()
    print(
        f"faults: accepted={len(accepted)} refused={refused} terminal={terminal} "
        f"success={success} failed={failed} stuck={stuck} doubled={doubled} "
        f"kills={kills} redis_restarts={restarts} duplicates={duplicates} resumed={resumed} "
        f"lost_timeout={args.lost_timeout:g}s wall={wall:.1f}s"
    )
    if failed:
        for execution_id, status in statuses.items():
            if status == "failed":
                doc = store.get(execution_id) or {}
                print(f"  failed {execution_id}: {doc.get('message')}")
    if stuck:
        for execution_id, status in statuses.items():
            if status not in TERMINAL:
                print(f"  stuck {execution_id}: {status}")
    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
