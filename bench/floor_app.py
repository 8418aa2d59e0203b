"""The floor's Celery app: one noop task on procexec's broker, with Celery's defaults or with
procexec's own Celery settings (`procexec.workers.celery_app.make_celery`'s, read from it, so
that they follow the service's).

bench/throughput.py and bench/latency.py start its worker as
`celery -A floor_app worker` (bench/ on `PYTHONPATH`), with `BENCH_FLOOR_CONFIG` (`defaults`
or `procexec`; `store`: procexec's app whose task also makes a run's store writes, below),
`BENCH_STAMPS` (the file the task appends `start end` to, `time.time()` at its
start and end) and procexec's `PROCEXEC_*` settings (the broker) in the environment; and
build the same app in the measuring process to send the tasks and to control the worker.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from celery import Celery

from procexec.engine.settings import Settings
from procexec.engine.store import ExecutionStore, open_store
from procexec.workers.celery_app import broker_options, make_celery

NOOP = "floor.noop"
QUEUE = "floor"
CONFIGS = ("defaults", "procexec")
#: the third floor (bench/throughput.py): procexec's Celery settings, and a task that makes
#: the store writes of a DEMO run (`STORE_WRITES`) and nothing else of the engine
STORE = "store"
STORE_WRITES = "floor.store_writes"

_stamps: dict[int, int] = {}  # pid → the stamps file's descriptor, opened once per process


def _append(line: str) -> None:
    fd = _stamps.get(os.getpid())
    if fd is None:
        path = os.environ["BENCH_STAMPS"]
        fd = _stamps[os.getpid()] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())  # one write, O_APPEND: lines of concurrent tasks never mix


def noop(tag: str = "") -> None:
    start = time.time()
    end = time.time()
    _append(f"{start:.6f} {end:.6f} {tag}\n")


_stores: dict[int, tuple[ExecutionStore, list[Any]]] = {}  # pid → store, a run's writes


def store_writes(execution_id: str) -> None:
    """A DEMO run's own store writes, on the recorded execution `execution_id`: the `Update`s
    its claim and its end made, in order (pickled in the file `BENCH_STORE_WRITES`), each a
    transaction of procexec's store as the engine makes it; no read, no phase, no log."""
    start = time.time()
    opened = _stores.get(os.getpid())
    if opened is None:
        with open(os.environ["BENCH_STORE_WRITES"], "rb") as file:
            changes = pickle.load(file)  # written by bench/throughput.py, this run's parent
        opened = _stores[os.getpid()] = (open_store(Settings.from_env().store_url), changes)
    store, changes = opened
    for change in changes:
        if not store.update(execution_id, change):
            raise RuntimeError(f"{execution_id}: a write of the run did not apply")
    end = time.time()
    _append(f"{start:.6f} {end:.6f} {execution_id}\n")


def make_app(config: str, settings: Settings) -> Celery:
    """The floor's app: `procexec`, the service's own app (its conf as make_celery sets it);
    `defaults`, a bare Celery app on the same broker and transport options, nothing else set."""
    if config in ("procexec", STORE):
        app = make_celery(settings)
    elif config == "defaults":
        url, options = broker_options(settings)
        app = Celery("floor", broker=url, set_as_current=False)
        app.conf.broker_transport_options = options  # the transport's own (folders, timeout)
    else:
        raise ValueError(f"config: one of {(*CONFIGS, STORE)}, not {config!r}")
    app.task(name=NOOP, ignore_result=True)(noop)
    if config == STORE:
        app.task(name=STORE_WRITES, ignore_result=True)(store_writes)
    return app


if os.environ.get("BENCH_FLOOR_CONFIG"):  # imported by the floor's worker
    app = make_app(os.environ["BENCH_FLOOR_CONFIG"], Settings.from_env())


def read_stamps(path: str) -> list[tuple[float, float, str]]:
    """The stamps the tasks appended: (start, end, tag) each."""
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        start, end, *tag = line.split(" ")
        found.append((float(start), float(end), tag[0] if tag else ""))
    return found
