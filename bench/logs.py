"""Log lines per second through the real engine, beside the floor of stamping the lines alone.

A process defined here (`BENCH_LOGS`) has one phase that logs `lines` lines in a loop
(`ctx.log`). Each run is recorded by `TriggerService.record` in an `SQLiteStore` on a temporary
file and run by a `PhaseRunner` in this process (no broker): one run alone per `--lines`
figure, then `--runs` runs at once (threads of this process, or with `--processes` one
process each). It prints, for each case:

- lines/s over the run's wall time (claim to final write; for runs at once, from the first
  start to the last end), and the ratio to the floor measured in the same run: `log_line`
  (the stamp and the text, what a line costs before the recorder sees it) in a loop;
- the store writes: calls of `store.update` (with `--trace`, COMMITs too, seen by a trace
  callback on every SQLite connection), the document's size after each and how long each
  took, p50 and max; then, by how far the run had got (fifths of its lines), the mean size
  and time of a write: whether a flush costs more the more was logged;
- a reader's lag (`bench/log_reader.py`, in a process of its own): now minus the stamp of each
  line the first time a poll of the document sees it; p50, p99, and the share of the lines
  it saw (a capped log drops lines before any reader sees them);
- and a run that logs at a steady pace (`--paced`), whose writes show how a flush's size and
  time follow the log's length (until the cap, `PROCEXEC_MAX_LOG_LINES`).

Cases and the floor run in turns (`--turns`); each figure is the median of its turns. Nothing
is asserted. `--profile` runs one turn under py-spy and prints where the recorder's writes and
the phase's loop spend their samples. PROCEXEC_LOG_FLUSH_INTERVAL and PROCEXEC_MAX_LOG_LINES
apply as in a worker.

    python bench/logs.py            # 10,000 and 100,000 lines, 10 runs at once, one paced
    python bench/logs.py --quick    # a few seconds; --profile: one turn under py-spy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procexec import PhaseContext, Process  # noqa: E402
from procexec.engine.process import ProcessRegistry  # noqa: E402
from procexec.engine.runner import PhaseRunner  # noqa: E402
from procexec.engine.settings import Settings  # noqa: E402
from procexec.engine.store.sqlite import SQLiteStore  # noqa: E402
from procexec.engine.timeutil import log_line  # noqa: E402
from procexec.engine.trigger_service import TriggerService  # noqa: E402

TEXT = "rows {i} of {n} read from the source, 42 values parsed, nothing refused"
ENV = "production"
#: a case: lines, runs at once, pace (lines a second; 0: as fast as it can)
Spec = tuple[int, int, float]

BENCH_LOGS = Process("BENCH_LOGS", defaults={"lines": 10_000, "pace": 0})
#: lines logged so far, by execution id
PROGRESS: dict[str, int] = {}


@BENCH_LOGS.phase("EXTRACT")
def extract(ctx: PhaseContext, _: Any) -> None:
    """`lines` lines as fast as it can, or `pace` lines a second."""
    lines, pace = int(ctx.params["lines"]), float(ctx.params["pace"])
    began = time.perf_counter()
    for i in range(lines):
        if pace and i % 10 == 0:
            time.sleep(max(0.0, began + i / pace - time.perf_counter()))
        ctx.log(TEXT.format(i=i, n=lines))
        PROGRESS[ctx.execution_id] = i + 1


def floor(lines: int) -> float:
    """Lines per second of stamping the same lines alone."""
    began = time.perf_counter()
    for i in range(lines):
        log_line("info", TEXT.format(i=i, n=lines))
    return lines / (time.perf_counter() - began)


# --- counting the writes ---------------------------------------------------------------------


class Writes:
    """Each `store.update` call: the lines its run had logged, the document's bytes after it
    (read on a connection of this script's own, outside the timed call; -1 if the table is
    not what it was), and its milliseconds. With `trace`, also every COMMIT of the SQLite
    connections this process opens from now on (a trace callback on each: it makes a write
    of a 114 KB document about 1 ms slower, so it is off by default)."""

    def __init__(self, db: str, trace: bool = False) -> None:
        self.db = db
        self.commits = -1 if not trace else 0
        self.updates: list[tuple[str, int, int, float]] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connect = sqlite3.connect
        if trace:

            def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
                conn = self._connect(*args, **kwargs)
                conn.set_trace_callback(self._statement)
                return conn

            sqlite3.connect = traced  # type: ignore[assignment]

    def _statement(self, sql: str) -> None:
        if sql.startswith("COMMIT"):
            with self._lock:
                self.commits += 1

    def _size(self, execution_id: str) -> int:
        conn = getattr(self._local, "conn", None) or self._connect(self.db)
        self._local.conn = conn
        try:
            sql = "SELECT length(CAST(doc AS BLOB)) FROM executions WHERE id = ?"
            return int(conn.execute(sql, (execution_id,)).fetchone()[0])
        except (sqlite3.Error, TypeError):
            return -1

    def wrap(self, store: SQLiteStore) -> None:
        update = store.update

        def counted(execution_id: str, change: Any) -> bool:
            began = time.perf_counter()
            try:
                return update(execution_id, change)
            finally:
                spent = (time.perf_counter() - began) * 1000
                size = self._size(execution_id)
                record = (execution_id, PROGRESS.get(execution_id, 0), size, spent)
                with self._lock:
                    self.updates.append(record)

        store.update = counted  # type: ignore[method-assign]


def execute(
    store: SQLiteStore, ids: list[str], settings: Settings, writes: Writes
) -> dict[str, Any]:
    """Run `ids` at once, each in a thread of this process; the figures as JSON-able values."""
    flush, keep = settings.log_flush_interval, settings.max_log_lines
    runner = PhaseRunner(
        store, ProcessRegistry([BENCH_LOGS]), flush_interval=flush, max_log_lines=keep
    )
    commits_before, updates_before = writes.commits, len(writes.updates)
    walls: list[tuple[float, float]] = []
    statuses: list[str | None] = []

    def one(execution_id: str) -> None:
        began = time.time()
        statuses.append(runner.run(execution_id))
        walls.append((began, time.time()))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    commits = writes.commits - commits_before if writes.commits >= 0 else -1
    updates = writes.updates[updates_before:]
    return {"walls": walls, "statuses": statuses, "commits": commits, "updates": updates}


class Work:
    """The temporary folder, its store, and the subprocesses: all gone on `close`."""

    def __init__(self, trace: bool) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="procexec-bench-logs-"))
        self.db = str(self.folder / "bench.db")
        self.writes = Writes(self.db, trace)
        self.store = SQLiteStore(self.db)  # one store for every case (as a worker has)
        self.writes.wrap(self.store)
        self.triggers = TriggerService(self.store, ProcessRegistry([BENCH_LOGS]), lambda *_: None)
        self.children: list[subprocess.Popen[str]] = []

    def record(self, lines: int, count: int, pace: float) -> list[str]:
        body = {"lines": lines, "pace": pace}
        record = self.triggers.record
        return [
            str(record("BENCH_LOGS", run_as="bench", environment=ENV, body=body)["_id"])
            for _ in range(count)
        ]

    def spawn(self, script: str, *args: str) -> subprocess.Popen[str]:
        pipe = subprocess.PIPE
        child = subprocess.Popen(
            [sys.executable, script, *args], stdin=pipe, stdout=pipe, text=True
        )
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        with contextlib.suppress(Exception):
            self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def case(work: Work, settings: Settings, spec: Spec, processes: bool) -> dict[str, Any]:
    lines, runs, pace = spec
    ids = work.record(lines, runs, pace)
    watcher = work.spawn(str(ROOT / "bench" / "log_reader.py"), work.db, ",".join(ids))
    assert watcher.stdout is not None
    watcher.stdout.readline()  # ready
    if processes and runs > 1:
        trace = "1" if work.writes.commits >= 0 else "0"
        children = [work.spawn(__file__, "--run", work.db, trace, one) for one in ids]
        ready = [child.stdout.readline() for child in children if child.stdout]  # imported
        for child in children:  # then all at once
            assert child.stdin is not None and len(ready) == len(children)
            child.stdin.write("go\n")
            child.stdin.flush()
        parts = [json.loads(child.communicate()[0]) for child in children]
        result: dict[str, Any] = {
            key: [item for part in parts for item in part[key]]
            for key in ("walls", "statuses", "updates")
        }
        counts = [part["commits"] for part in parts]
        result["commits"] = sum(counts) if min(counts) >= 0 else -1
    else:
        result = execute(work.store, ids, settings, work.writes)
    result.update(json.loads(watcher.communicate()[0]))
    result["lines"], result["runs"] = lines, runs
    return result


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def figures(result: dict[str, Any]) -> dict[str, float]:
    updates = result["updates"]
    sizes = [float(u[2]) for u in updates]
    spent = [u[3] for u in updates]
    logged = result["lines"] * result["runs"]
    span = max(end for _, end in result["walls"]) - min(start for start, _ in result["walls"])
    return {
        "rate": logged / span,
        "wall": span,
        "commits": result["commits"],
        "updates": len(updates),
        "kb50": _pct(sizes, 0.5) / 1024,
        "kbmax": max(sizes, default=0) / 1024,
        "ms50": _pct(spent, 0.5),
        "msmax": max(spent, default=0),
        "lag50": _pct(result["lags"], 0.5),
        "lag99": _pct(result["lags"], 0.99),
        "seen": len(result["lags"]) / logged,
    }


def growth(result: dict[str, Any]) -> str:
    """Count, mean KB and mean ms of a write in each fifth of the runs' progress."""
    parts = []
    for fifth in range(5):
        low, high = fifth * result["lines"] / 5, (fifth + 1) * result["lines"] / 5
        inside = [u for u in result["updates"] if low < u[1] <= high or (fifth == 0 and u[1] == 0)]
        if inside:
            kb = statistics.mean(u[2] for u in inside) / 1024
            ms = statistics.mean(u[3] for u in inside)
            parts.append(
                f"{fifth * 20}-{fifth * 20 + 20}%: {len(inside)} x {kb:.1f} KB {ms:.2f} ms"
            )
    return " | ".join(parts)


def label(spec: Spec, how: str) -> str:
    lines, runs, pace = spec
    if pace:
        return f"1 run x {lines:,} at {pace:,.0f}/s"
    return f"1 run x {lines:,}" if runs == 1 else f"{runs} runs x {lines:,} ({how})"


def run_turns(args: argparse.Namespace, settings: Settings) -> None:
    work = Work(args.trace)
    specs: list[Spec] = [(lines, 1, 0.0) for lines in args.lines]
    specs.append((args.lines[0], args.runs, 0.0))
    if args.paced:
        pace, seconds = (float(x) for x in args.paced.split(":"))
        specs.append((round(pace * seconds), 1, pace))
    results: dict[Spec, list[dict[str, Any]]] = {spec: [] for spec in specs}
    floors: list[float] = []
    try:
        for turn in range(args.turns):
            for spec in specs:
                if spec[1] == 1 and not spec[2]:
                    floors.append(floor(spec[0]))
                results[spec].append(case(work, settings, spec, args.processes))
                bad = [s for s in results[spec][-1]["statuses"] if s != "success"]
                if bad:
                    raise SystemExit(f"runs ended {bad}")
            print(f"  turn {turn + 1} of {args.turns} done", file=sys.stderr)
    finally:
        work.close()
    report(args, settings, results, floors)


def report(
    args: argparse.Namespace,
    settings: Settings,
    results: dict[Spec, list[dict[str, Any]]],
    floors: list[float],
) -> None:
    how = "processes" if args.processes else "threads"
    base = statistics.median(floors)
    print(
        f"\nlog flush interval {settings.log_flush_interval} s, {settings.max_log_lines} lines "
        f"kept per phase, {args.turns} turns (medians), sqlite {sqlite3.sqlite_version}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    print(f"floor: log_line alone, {base:,.0f} lines/s (median of {len(floors)})")
    print(
        f"{'case':<28} {'lines/s':>9} {'x floor':>7} {'wall s':>6} {'commits':>7} "
        f"{'updates':>7} {'KB/write p50':>12} {'max':>6} {'ms/write p50':>12} {'max':>6} "
        f"{'lag ms p50':>10} {'p99':>5} {'seen':>5}"
    )
    for spec, turns in results.items():
        rows = [figures(r) for r in turns]
        m = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        ratio = f"{m['rate'] / base:7.3f}" if not spec[2] else f"{'paced':>7}"
        commits = f"{m['commits']:>7.0f}" if m["commits"] >= 0 else f"{'-':>7}"
        print(
            f"{label(spec, how):<28} {m['rate']:>9,.0f} {ratio} {m['wall']:>6.2f} "
            f"{commits} {m['updates']:>7.0f} {m['kb50']:>12.1f} {m['kbmax']:>6.1f} "
            f"{m['ms50']:>12.2f} {m['msmax']:>6.2f} {m['lag50']:>10.0f} {m['lag99']:>5.0f} "
            f"{m['seen']:>5.0%}"
        )
    print("\na write by the run's progress (last turn; count x mean size, mean time):")
    for spec, turns in results.items():
        print(f"  {label(spec, how):<28} {growth(turns[-1])}")


def profile(args: argparse.Namespace) -> None:
    """One turn of this script under py-spy; then the frames of the recorder's threads (the
    flushes) and of the phase's thread (`ctx.log`)."""
    import profiling

    output = profiling.output_path("logs")
    lines = ",".join(str(n) for n in args.lines)
    argv = [__file__, "--lines", lines, "--runs", str(args.runs), "--paced", args.paced]
    profiling.run([sys.executable, *argv, "--turns", "1"], output)
    profiling.print_summary("the recorder's writes", output, within="ExecutionRecorder._write")
    profiling.print_summary("the phases' threads", output, within="extract (bench/logs.py)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run"]:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            writes = Writes(argv[1], trace=argv[2] == "1")
            store = SQLiteStore(argv[1])
            writes.wrap(store)
            print("ready", flush=True)
            sys.stdin.readline()  # go
            result = execute(store, argv[3:], Settings.from_env(), writes)
            json.dump(result, sys.stdout)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", default="10000,100000", help="lines of one run, per case")
    parser.add_argument("--runs", type=int, default=10, help="runs at once (of the first --lines)")
    parser.add_argument("--turns", type=int, default=3, help="times each case runs")
    parser.add_argument("--processes", action="store_true", help="runs at once in processes")
    parser.add_argument(
        "--paced", default="2000:5", help="a run logging RATE lines/s for SECONDS ('': none)"
    )
    parser.add_argument("--trace", action="store_true", help="count COMMITs (slows writes)")
    parser.add_argument("--quick", action="store_true", help="2,000 lines, 3 runs, 1 turn")
    parser.add_argument("--profile", action="store_true", help="py-spy on a single run")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.runs, args.turns, args.paced = "2000", 3, 1, "2000:1"
    args.lines = [int(n.replace("_", "")) for n in args.lines.split(",") if n.strip()]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.profile:
        profile(args)
    else:
        run_turns(args, Settings.from_env())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # cleaned up by `Work.close`
        main()
