"""Throughput: N DEMO runs (`sleep: 0`, four noop phases) drained by one worker, beside the
floor, bare Celery noop tasks drained by the same kind of worker on the same broker.

For each mode (`redis`: a private redis-server, the SQLite store; `embedded`: procexec's
filesystem broker and the SQLite store) and each pool (`prefork:2`, `threads:8`), in turns:

- floor, Celery defaults: N noop tasks (bench/floor_app.py) sent, then one worker started
  with the same pool, concurrency and `--without-mingle --without-gossip` as `procexec worker`;
- floor, procexec settings: the same on procexec's own Celery app (`make_celery`'s conf: acks
  late, prefetch multiplier 1, task events on);
- floor, store writes: the same app, whose task makes on a recorded DEMO run the store writes
  a DEMO run makes (its claim and its end: the `Update`s, captured from one run in this
  process) and nothing else: what any engine keeping this document, its indexes, counters,
  search index, journal and checkpoints in SQLite pays, beside Celery's own cost;
- procexec, hand-over off and on (`PROCEXEC_LOADER_QUEUE` empty or `loader`): N runs recorded
  and sent (`TriggerService.trigger`, in this process) while no worker runs, then one
  `procexec worker` started.

Each worker starts on an empty queue and is given the real ones (`add_consumer`) once it
answers a ping, so that its start is neither timed nor counted. Timed: from the first task's
start (a run's first phase's start stamp) to the last one's end (the runs' `end`), ms stamps
of the wall clock. Worker CPU: the worker's process tree's user + system time, from /proc,
from the moment it is given the queues to the last run's end. Beside the procexec rows: the
store's transactions and statements per run, measured in-process (bench/store_cost.py).
Nothing is asserted.

    python bench/throughput.py --quick
    python bench/throughput.py                      # 1000 runs on Redis, 500 embedded
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import store_cost
from floor_app import CONFIGS, NOOP, STORE, STORE_WRITES, make_app, read_stamps
from harness import FLOOR_QUEUE, MODES, QUEUE, TERMINAL, Lab

from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.service import build
from procexec.workers.celery_app import make_celery

DEFAULT_RUNS = {"redis": 1000, "embedded": 500}
KINDS = ("floor defaults", "floor procexec", "floor store", "hand-over off", "hand-over on")


@dataclass
class Drain:
    kind: str
    mode: str
    pool: str
    runs: int
    seconds: float
    cpu: float
    ok: int

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds > 0 else float("nan")


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _pool(spec: str) -> tuple[str, int]:
    pool, _, concurrency = spec.partition(":")
    return pool, int(concurrency or 2)


def _settle(done: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until `done()` or the timeout (a worker that died ends it at once)."""
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the drain did not finish (the logs are in the work folder)")
        time.sleep(0.02)


def drain_procexec(lab: Lab, mode: str, spec: str, runs: int, hand_over: bool) -> Drain:
    lab.flush_redis()
    data = lab.folder(f"procexec-{lab.started}")
    broker = lab.redis_url() if mode == "redis" else None
    env = harness.service_env(data, broker, hand_over)
    settings = Settings.from_env(env)
    service = build(settings)
    store = service.store
    pending = [
        str(
            service.triggers.trigger(
                "DEMO", run_as="bench", environment=DEFAULT_ENVIRONMENT, body={"sleep": 0}
            )["_id"]
        )
        for _ in range(runs)
    ]
    ids = list(pending)
    pool, concurrency = _pool(spec)
    # the loader queue (empty until the runs hand their LOAD over) from the start: added
    # later (`add_consumer`), Redis's worker left its messages waiting for seconds
    queues = f"{harness.IDLE_QUEUE},loader" if hand_over else harness.IDLE_QUEUE
    worker = lab.spawn("worker", harness.procexec_worker(pool, concurrency, queues), env)
    control = make_celery(settings)
    harness.wait_ready(control, worker)
    cpu = harness.tree_cpu(worker.pid)
    harness.consume(control, [QUEUE])

    def done() -> bool:
        while pending and (store.get(pending[0]) or {}).get("status") in TERMINAL:
            pending.pop(0)
        return not pending

    _settle(done, worker, 30 + runs * 0.5)
    cpu = harness.tree_cpu(worker.pid) - cpu
    lab.stop(worker)
    docs = [store.get(i) or {} for i in ids]
    store.close()
    first = min(_stamp(doc["phases"][0]["start"]) for doc in docs)
    last = max(_stamp(doc["end"]) for doc in docs)
    ok = sum(doc.get("status") == "success" for doc in docs)
    kind = "hand-over on" if hand_over else "hand-over off"
    return Drain(kind, mode, spec, runs, last - first, cpu, ok)


class _Writes:
    """A store whose `update`s are kept, in order, besides being made."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.changes: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def update(self, execution_id: str, change: Any) -> bool:
        self.changes.append(change)
        return bool(self.store.update(execution_id, change))


def run_writes(lab: Lab) -> Path:
    """The `Update`s one DEMO run (`sleep: 0`) makes, run in this process on a store of its
    own after a few to warm up, pickled into a file for the store floor's tasks."""
    data = lab.folder(f"writes-{lab.started}")
    settings = Settings.from_env(harness.service_env(data, None, False))
    service = build(settings, dispatch=lambda *_: None)
    writes = _Writes(service.store)
    runner = PhaseRunner(writes, service.registry, worker_id="bench:1")  # type: ignore[arg-type]
    for _ in range(3):
        writes.changes.clear()
        doc = service.triggers.record(
            "DEMO", run_as="bench", environment=DEFAULT_ENVIRONMENT, body={"sleep": 0}
        )
        if runner.run(str(doc["_id"])) != "success":
            raise RuntimeError("the DEMO run whose writes the store floor makes failed")
    service.store.close()
    path = data / "writes.pickle"
    path.write_bytes(pickle.dumps(writes.changes))
    return path


def drain_floor(lab: Lab, mode: str, spec: str, runs: int, config: str, writes: Path) -> Drain:
    lab.flush_redis()
    data = lab.folder(f"floor-{lab.started}")
    stamps = data / "stamps"
    broker = lab.redis_url() if mode == "redis" else None
    env = harness.floor_env(harness.service_env(data, broker, False), config, stamps)
    env["BENCH_STORE_WRITES"] = str(writes)
    settings = Settings.from_env(env)
    app = make_app(config, settings)
    if config == STORE:  # recorded as the API records them, and not sent
        service = build(settings, dispatch=lambda *_: None)
        for _ in range(runs):
            doc = service.triggers.record(
                "DEMO", run_as="bench", environment=DEFAULT_ENVIRONMENT, body={"sleep": 0}
            )
            app.send_task(STORE_WRITES, args=[str(doc["_id"])], queue=FLOOR_QUEUE)
        service.store.close()
    else:
        for _ in range(runs):
            app.send_task(NOOP, queue=FLOOR_QUEUE)
    pool, concurrency = _pool(spec)
    worker = lab.spawn("floor", harness.floor_worker(pool, concurrency), env)
    harness.wait_ready(app, worker)
    cpu = harness.tree_cpu(worker.pid)
    harness.consume(app, [FLOOR_QUEUE])
    _settle(lambda: len(read_stamps(str(stamps))) >= runs, worker, 30 + runs * 0.1)
    cpu = harness.tree_cpu(worker.pid) - cpu
    lab.stop(worker)
    found = read_stamps(str(stamps))
    seconds = max(end for _, end, _ in found) - min(start for start, _, _ in found)
    return Drain(f"floor {config}", mode, spec, runs, seconds, cpu, len(found))


def beyond(rate: dict[str, float]) -> str:
    """Milliseconds of a drain per run: Celery's own (the floor with procexec's settings), the
    store writes' (the store floor's beyond it), and procexec's beyond both."""
    celery = 1000 / rate["floor procexec"]
    store = 1000 / rate["floor store"] - celery
    mine = ", ".join(
        f"{1000 / rate[kind] - celery - store:.2f} ({kind})" for kind in KINDS[3:] if kind in rate
    )
    return f"ms a run: Celery {celery:.2f}, the store's writes {store:.2f}, procexec's own {mine}"


def report(drains: list[Drain], costs: dict[bool, store_cost.Cost], turns: int) -> None:
    """One table per mode and pool: each kind's median over the turns, and the ratios."""
    print()
    for mode in dict.fromkeys(d.mode for d in drains):
        for spec in dict.fromkeys(d.pool for d in drains if d.mode == mode):
            mine = [d for d in drains if d.mode == mode and d.pool == spec]
            rate = {k: harness.median([d.rate for d in mine if d.kind == k]) for k in KINDS}
            print(f"{mode}, pool {spec}, {mine[0].runs} runs, median of {turns} turn(s)")
            head = (
                f"  {'':<16}{'runs/s':>9}{'drain s':>9}{'floor/this':>11}{'def./this':>10}"
                f"{'store/this':>11}"
                f"{'CPU ms/run':>11}{'tx/run':>8}{'stmts/run':>10}{'ok':>6}"
            )
            print(head)
            for kind in KINDS:
                rows = [d for d in mine if d.kind == kind]
                if not rows:
                    continue
                seconds = harness.median([d.seconds for d in rows])
                cpu = harness.median([d.cpu * 1000 / d.runs for d in rows])
                store = ""
                if kind.startswith("hand-over"):
                    per = costs[kind == "hand-over on"].per_run()
                    store = f"{per['tx']:>8.1f}{per['stmts']:>10.1f}"
                else:
                    store = f"{'':>8}{'':>10}"
                print(
                    f"  {kind:<16}{rate[kind]:>9.1f}{seconds:>9.2f}"
                    f"{rate['floor procexec'] / rate[kind]:>11.2f}"
                    f"{rate['floor defaults'] / rate[kind]:>10.2f}"
                    f"{rate['floor store'] / rate[kind]:>11.2f}{cpu:>11.2f}{store}"
                    f"{min(d.ok for d in rows):>6}"
                )
            print("  " + beyond(rate))
            print()
    print("floor/this: the floor's runs/s (procexec's Celery settings) over this row's; def./this:")
    print("the same against Celery's defaults; store/this: against the store floor (procexec's")
    print("settings, and a DEMO run's store writes). tx, stmts: the store's, per run (in-process).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per drain (default 1000, embedded 500)")
    parser.add_argument("--modes", default="redis,embedded", help="redis,embedded")
    parser.add_argument("--pools", default="prefork:2,threads:8", help="pool:concurrency,…")
    parser.add_argument("--repeat", type=int, default=1, help="turns")
    parser.add_argument("--store-runs", type=int, default=200, help="in-process runs")
    parser.add_argument("--quick", action="store_true", help="100 runs (50 embedded), prefork")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))}")
    pools = args.pools.split(",") if not args.quick else ["prefork:2"]
    counts = {m: args.runs or (DEFAULT_RUNS[m] // (10 if args.quick else 1)) for m in modes}
    store_runs = 20 if args.quick else args.store_runs

    costs = {hand_over: store_cost.measure(store_runs, hand_over) for hand_over in (False, True)}
    store_cost.report(list(costs.values()))
    drains: list[Drain] = []
    with Lab("procexec-throughput-") as lab:
        writes = run_writes(lab)
        for turn in range(args.repeat):
            for mode in modes:
                for spec in pools:
                    order = [*CONFIGS, STORE, False, True]
                    if turn % 2:
                        order.reverse()  # the machine's drift weighs on all alike
                    for what in order:
                        if isinstance(what, str):
                            drain = drain_floor(lab, mode, spec, counts[mode], what, writes)
                        else:
                            drain = drain_procexec(lab, mode, spec, counts[mode], what)
                        drains.append(drain)
                        print(
                            f"turn {turn + 1} {mode} {spec} {drain.kind}: {drain.rate:.1f}/s, "
                            f"CPU {drain.cpu * 1000 / drain.runs:.2f} ms/run, ok {drain.ok}",
                            flush=True,
                        )
    report(drains, costs, args.repeat)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the processes and the folder are gone already (Lab)
        sys.exit(130)
