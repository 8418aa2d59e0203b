"""What a run costs the SQLite store, measured in-process: K DEMO runs (`sleep: 0`) recorded by
`TriggerService.record` and run by `PhaseRunner.run` (and, with the loader hand-over, the LOAD
by `PhaseRunner.run` with the ticket handed over) on a `SQLiteStore` in a temporary file, every
connection traced (`sqlite3`'s `set_trace_callback`): transactions (each BEGIN, and each write
outside one), statements, bytes written (this process's write calls, `/proc/self/io` wchar:
the WAL's frames and its checkpoints into the file), and the file's growth (after a
checkpoint), per run. Only public calls of the service are used: `service.build` (given the
store and a dispatch that sends nothing), `TriggerService.record`, `PhaseRunner.run`.

    python bench/store_cost.py --runs 200
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store.sqlite import SQLiteStore
from procexec.service import build

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@dataclass
class Count:
    transactions: int = 0
    statements: int = 0
    #: trigger programs run (Python's trace repeats the statement that fired each)
    triggers: int = 0
    writes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class Tracer:
    """Counts what every traced connection runs, into `self.count` (swap it to split)."""

    def __init__(self) -> None:
        self.count = Count()

    def callback(self) -> Callable[[str], None]:
        in_transaction = False
        last = ""

        def trace(sql: str) -> None:
            nonlocal in_transaction, last
            text = sql.lstrip()
            if text.startswith("--"):  # a virtual table's own statement (the FTS index)
                return
            count = self.count
            if text == last:  # a trigger of the statement: reported as the statement again
                count.triggers += 1
                return
            last = text
            word = text.split(None, 1)[0].upper() if text else ""
            count.statements += 1
            count.kinds[word] = count.kinds.get(word, 0) + 1
            if word == "BEGIN":
                in_transaction = True
                count.transactions += 1
            elif word in ("COMMIT", "END", "ROLLBACK"):
                in_transaction = False
            elif word in WRITES or (word == "WITH" and any(w in text.upper() for w in WRITES)):
                count.writes += 1
                if not in_transaction:
                    count.transactions += 1  # autocommit: a transaction of its own

        return trace


@contextmanager
def traced(tracer: Tracer) -> Iterator[None]:
    """Every connection `sqlite3.connect` opens meanwhile, traced."""
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(tracer.callback())
        return conn

    sqlite3.connect = traced_connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = connect  # type: ignore[assignment]


def written() -> int:
    """Bytes this process has passed to write calls (wchar), 0 where /proc has no io."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def file_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db.stat().st_size


@dataclass
class Cost:
    runs: int
    hand_over: bool
    record: Count
    run: Count
    bytes_written: int
    growth: int

    def per_run(self) -> dict[str, float]:
        n = self.runs
        return {
            "record tx": self.record.transactions / n,
            "record stmts": self.record.statements / n,
            "run tx": self.run.transactions / n,
            "run stmts": self.run.statements / n,
            "triggers": (self.record.triggers + self.run.triggers) / n,
            "tx": (self.record.transactions + self.run.transactions) / n,
            "stmts": (self.record.statements + self.run.statements) / n,
            "KB written": self.bytes_written / n / 1024,
            "KB stored": self.growth / n / 1024,
        }


def measure(runs: int, hand_over: bool, warmup: int = 5) -> Cost:
    logging.disable(logging.INFO)  # the engine's log lines would be counted as bytes written
    work = Path(tempfile.mkdtemp(prefix="procexec-store-cost-"))
    try:
        db = work / "procexec.db"
        tracer = Tracer()
        tickets: list[tuple[str, str]] = []
        with traced(tracer):
            settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(work)})
            store = SQLiteStore(db)
            service = build(
                settings,
                store=store,
                dispatch=lambda *_: None,
                hand_off=(lambda i, ticket, _: tickets.append((i, ticket))) if hand_over else None,
            )
            runner = PhaseRunner(
                store,
                service.registry,
                worker_id="bench:1",
                flush_interval=settings.log_flush_interval,
                triggers=service.triggers,
                heartbeat_interval=settings.heartbeat_interval,
                max_log_lines=settings.max_log_lines,
            )

            def one() -> str:
                doc = service.triggers.record(
                    "DEMO", run_as="bench", environment=DEFAULT_ENVIRONMENT, body={"sleep": 0}
                )
                return str(doc["_id"])

            def run(execution_id: str) -> None:
                status = runner.run(execution_id)
                while tickets:  # the LOAD the hand-over sent, as the loader runs it
                    handed, ticket = tickets.pop()
                    status = runner.run(handed, ticket)
                if status != "success":
                    raise RuntimeError(f"DEMO ended {status}")

            for _ in range(warmup):  # the first connection's PRAGMAs, the caches
                run(one())
            size, wrote = file_size(db), written()
            record, ran = Count(), Count()
            for _ in range(runs):
                tracer.count = record
                execution_id = one()
                tracer.count = ran
                run(execution_id)
            tracer.count = Count()
            wrote = written() - wrote
            store.close()
        return Cost(runs, hand_over, record, ran, wrote, file_size(db) - size)
    finally:
        logging.disable(logging.NOTSET)
        shutil.rmtree(work, ignore_errors=True)


def report(costs: list[Cost]) -> None:
    columns = list(costs[0].per_run())
    print(f"store cost per DEMO run (in-process SQLite, {costs[0].runs} runs each)")
    print(f"  {'hand-over':<10}" + "".join(f"{c:>14}" for c in columns))
    for cost in costs:
        values = cost.per_run()
        label = "on" if cost.hand_over else "off"
        print(f"  {label:<10}" + "".join(f"{values[c]:>14.1f}" for c in columns))
    for cost in costs:
        kinds = {**cost.record.kinds}
        for kind, n in cost.run.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
        shown = ", ".join(f"{k} {n / cost.runs:.1f}" for k, n in sorted(kinds.items()))
        print(f"  statements by kind, hand-over {'on' if cost.hand_over else 'off'}: {shown}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    report([measure(args.runs, hand_over) for hand_over in (False, True)])


if __name__ == "__main__":
    main()
