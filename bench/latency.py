"""Latency: one DEMO run (`sleep: 0`) at a time, triggered over HTTP on an idle worker, beside
the floor, a bare Celery noop task sent by `send_task` (`apply_async`) to an idle worker.

For each mode (`redis`: a private redis-server; `embedded`: procexec's filesystem broker; the
SQLite store in both) and hand-over off and on (`PROCEXEC_LOADER_QUEUE` empty or `loader`), it
starts a real `procexec api` and one `procexec worker` (prefork, 2 processes), and two floor
workers (bench/floor_app.py: Celery's defaults, and procexec's own Celery settings) with the
same pool; then, in turns of 20 calls each:

- procexec: the POST sent (its moment read from the wall clock just before), its 202 read, then
  the store polled until the run ends; from its document: POST → the first phase's start stamp
  (`running`), POST → the run's `end` (`success`). The stamps are the engine's own (wall clock,
  UTC, milliseconds, on this machine), so the poll's pace does not weigh on them;
- each floor: `send_task`'s moment, then the task's own `time.time()` at its start and at its
  end (appended to a file), as POST → start and POST → end.

It prints p50 and p99 of each, in milliseconds, and procexec's p50 over the floor's (procexec's
settings). Nothing is asserted.

    python bench/latency.py --quick
    python bench/latency.py                  # 200 runs each
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from floor_app import CONFIGS, NOOP, make_app
from harness import FLOOR_QUEUE, MODES, QUEUE, TERMINAL, Lab, percentile

from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.tokens import create_token

TURN = 20
WARMUP = 5
POOL = ("prefork", 2)
#: poll pace while a run goes on (its figures come from its own stamps, not from the poll)
POLL = 0.002


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Procexec:
    """An API and a worker on one broker; `call` triggers a run and waits for its end."""

    def __init__(self, lab: Lab, env: dict[str, str], hand_over: bool) -> None:
        settings = Settings.from_env(env)
        self.store = open_store(settings.store_url)
        self.token = create_token(self.store, "bench")  # never printed
        port = harness.free_port()
        cli = [sys.executable, "-m", "procexec.cli"]
        api = lab.spawn("api", [*cli, "api", "--port", str(port), "--log-level", "WARNING"], env)
        queues = f"{QUEUE},loader" if hand_over else QUEUE
        pool, concurrency = POOL
        argv = harness.procexec_worker(pool, concurrency, queues, "-n", "procexec@bench")
        self.worker = lab.spawn("worker", argv, env)
        self.control = make_app("procexec", settings)
        harness.wait_api(port, api)
        harness.wait_ready(self.control, self.worker, "procexec@bench")
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.body = json.dumps({"name": "DEMO", "body": {"sleep": 0}}).encode()

    def call(self) -> tuple[float, float, float]:
        """(202 answered, running, ended), seconds after the POST was sent."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        sent = time.time()
        self.conn.request("POST", "/service/process-exec/v1", self.body, headers)
        response = self.conn.getresponse()
        answer = response.read()
        answered = time.time()
        if response.status != 202:
            raise RuntimeError(f"trigger answered {response.status}: {answer[:200]!r}")
        execution_id = json.loads(answer)["_id"]
        deadline = time.monotonic() + 60
        while True:
            doc = self.store.get(execution_id) or {}
            if doc.get("status") in TERMINAL:
                break
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"run {execution_id} did not end (logs: the work folder)")
            time.sleep(POLL)
        if doc["status"] != "success":
            raise RuntimeError(f"run {execution_id} ended {doc['status']}: {doc.get('message')}")
        running = _stamp(doc["phases"][0]["start"]) - sent
        return answered - sent, running, _stamp(doc["end"]) - sent


class Floor:
    """A floor worker of `config` on its own queue; `call` sends a noop and waits for its end."""

    def __init__(self, lab: Lab, env: dict[str, str], config: str) -> None:
        self.stamps = Path(env["PROCEXEC_DATA_DIR"]) / f"stamps-{config}"
        env = harness.floor_env(env, config, self.stamps)
        self.app = make_app(config, Settings.from_env(env))
        self.queue = f"{FLOOR_QUEUE}-{config}"
        node = f"floor-{config}@bench"
        pool, concurrency = POOL
        argv = harness.floor_worker(pool, concurrency, self.queue, "-n", node)
        self.worker = lab.spawn(f"floor-{config}", argv, env)
        harness.wait_ready(self.app, self.worker, node)
        self.offset = 0
        self.count = 0

    def call(self) -> tuple[float, float, float]:
        self.count += 1
        tag = str(self.count)
        sent = time.time()
        self.app.send_task(NOOP, args=[tag], queue=self.queue)
        answered = time.time()
        deadline = time.monotonic() + 60
        while True:
            with open(self.stamps, "a+b") as file:
                file.seek(self.offset)
                line = file.readline()
            if line.endswith(b"\n"):
                self.offset += len(line)
                start, end, got = line.decode().split()
                if got == tag:
                    return answered - sent, float(start) - sent, float(end) - sent
            elif self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the floor's task did not run (logs: the work folder)")
            else:
                time.sleep(POLL / 2)


def measure(lab: Lab, mode: str, hand_over: bool, runs: int) -> dict[str, list[Any]]:
    lab.flush_redis()
    data = lab.folder(f"{mode}-{'on' if hand_over else 'off'}")
    broker = lab.redis_url() if mode == "redis" else None
    env = harness.service_env(data, broker, hand_over)
    subjects: dict[str, Any] = {"procexec": Procexec(lab, env, hand_over)}
    for config in CONFIGS:
        subjects[f"floor {config}"] = Floor(lab, env, config)
    for subject in subjects.values():
        for _ in range(WARMUP):
            subject.call()
    found: dict[str, list[Any]] = {name: [] for name in subjects}
    while len(found["procexec"]) < runs:
        for name, subject in subjects.items():
            for _ in range(min(TURN, runs - len(found[name]))):
                found[name].append(subject.call())
    for subject in subjects.values():
        lab.stop(subject.worker)
    return found


def report(mode: str, hand_over: bool, found: dict[str, list[Any]]) -> None:
    runs = len(found["procexec"])
    print(f"{mode}, hand-over {'on' if hand_over else 'off'}, {runs} runs, idle worker "
          f"({POOL[0]}:{POOL[1]}), ms after the POST (floor: after send_task)")  # fmt: skip
    print(f"  {'':<16}{'sent p50':>10}{'p99':>8}{'running p50':>13}{'p99':>8}"
          f"{'end p50':>10}{'p99':>8}")  # fmt: skip
    p50: dict[str, tuple[float, float]] = {}
    for name, calls in found.items():
        figures = []
        for column in range(3):
            values = [call[column] * 1000 for call in calls]
            figures += [percentile(values, 0.5), percentile(values, 0.99)]
        p50[name] = (figures[2], figures[4])
        widths = (10, 8, 13, 8, 10, 8)
        print(
            f"  {name:<16}" + "".join(f"{v:>{w}.2f}" for v, w in zip(figures, widths, strict=True))
        )
    floor = p50["floor procexec"]
    mine = p50["procexec"]
    print(f"  procexec / floor (procexec settings), p50: running {mine[0] / floor[0]:.1f}x, "
          f"end {mine[1] / floor[1]:.1f}x")  # fmt: skip
    print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per row")
    parser.add_argument("--modes", default="redis,embedded", help="redis,embedded")
    parser.add_argument("--quick", action="store_true", help="20 runs")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))}")
    runs = 20 if args.quick else args.runs
    results = []
    with Lab("procexec-latency-") as lab:
        for mode in modes:
            for hand_over in (False, True):
                found = measure(lab, mode, hand_over, runs)
                results.append((mode, hand_over, found))
                report(mode, hand_over, found)
    print("sent: until the 202 (floor: until send_task returned); running: until the first")
    print("phase's start stamp (floor: the task's start); end: until the run's end stamp.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the processes and the folder are gone already (Lab)
        sys.exit(130)
