"""The embedded broker's floor: how fast a bare Celery worker drains it, how soon it starts a task.

A bare Celery app (a no-op task, nothing of procexec's engine) on the embedded transport
(`procexecfs://`, with the options `broker_options` gives it) and, in the same run, on stock
kombu's `filesystem://` with the same folders and polling interval. For each, one prefork worker
with two processes (`-c 2`):

- drain: N no-op tasks queued first, then drained, with Celery's defaults and with procexec's
  settings (the ones `make_celery` sets: acks late, prefetch multiplier 1, events on);
  messages/s from the first task's end to the last one's (and with procexec's settings and tasks
  of `--task-ms` each, whose ceiling is 2 processes / task time: 400/s for 5 ms tasks);
- latency: with procexec's settings, an idle worker, a task sent every 20 to 100 ms, one at a
  time: from the send to the task's start, p50 and p99 in milliseconds;
- idle CPU: the worker and its two processes, with nothing to do, over `--idle` seconds, in
  percent of one core (from /proc: every thread's schedstat, or the process's stat; Linux only,
  blank elsewhere);
- deep queue: each of `--depths` messages queued, then taken one by one by the channel itself (its
  `_get`, in this process, no worker): messages/s.

Run it with `python bench/embedded_transport.py` (about a minute); `--help` lists the knobs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the app the worker runs: its broker and settings from the environment
APP = """
import os, time
from celery import Celery
from procexec.engine.settings import Settings
from procexec.workers.celery_app import broker_options, make_celery

settings = Settings.from_env({"PROCEXEC_DATA_DIR": os.environ["BENCH_DATA"]})
url, options = broker_options(settings)
if os.environ["BENCH_TRANSPORT"] == "filesystem":
    url = "filesystem://"
if os.environ["BENCH_SETTINGS"] == "procexec":
    app = make_celery(settings)
    app.conf.broker_url = url
else:
    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(broker_transport_options=options, task_ignore_result=True)
app.conf.task_default_queue = "bench"
OUT = os.environ["BENCH_OUT"]

def _record(line):
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

@app.task(name="bench.noop")
def noop():
    _record(f"{time.time()}\\n")

@app.task(name="bench.busy")
def busy(seconds):
    time.sleep(seconds)
    _record(f"{time.time()}\\n")

@app.task(name="bench.stamp")
def stamp(sent):
    _record(f"{time.time() - sent}\\n")
"""


class Worker:
    def __init__(self, work: Path, transport: str, settings: str, name: str) -> None:
        self.out = work / f"{name}.out"
        self.out.unlink(missing_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "BENCH_DATA": str(work / name),
            "BENCH_TRANSPORT": transport,
            "BENCH_SETTINGS": settings,
            "BENCH_OUT": str(self.out),
        }
        self.name = name
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        sys.path.insert(0, str(work))
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("BENCH_")})
        for module in [m for m in sys.modules if m == "benchapp"]:
            del sys.modules[module]
        import benchapp  # type: ignore[import-not-found]

        self.app = benchapp.app

    def start(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-c", "2"]
        command += ["-P", "prefork", "-l", "WARNING", "-n", f"{self.name}@%h", "-Q", "bench"]
        log = (self.work / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=log, cwd=self.work)

    def lines(self) -> list[float]:
        try:
            return [float(line) for line in self.out.read_text().split()]
        except FileNotFoundError:
            return []

    def wait_lines(self, count: int, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while len(found := self.lines()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {len(found)} of {count} tasks ran")
            time.sleep(0.002)
        return found

    def send(self, task: str, *args: float) -> None:
        self.app.send_task(task, args=list(args), queue="bench")

    def pids(self) -> list[int]:
        assert self.proc is not None
        found = [self.proc.pid]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid:
                    found.append(int(pid))
        return found

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.app.close()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes, every thread of each: in nanoseconds from schedstat where
    the kernel keeps it, else in clock ticks from stat."""
    total = 0.0
    for pid in pids:
        threads = list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
        if threads:
            total += sum(int(path.read_text().split()[0]) for path in threads) / 1e9
        else:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def drain(work: Path, transport: str, settings: str, count: int, task_ms: float = 0) -> float:
    worker = Worker(work, transport, settings, f"drain-{transport}-{settings}-{task_ms}")
    try:
        for _ in range(count):
            if task_ms:
                worker.send("bench.busy", task_ms / 1000)
            else:
                worker.send("bench.noop")
        worker.start()
        times = worker.wait_lines(count, timeout=count / 5 + 60)
        return count / (max(times) - min(times))
    finally:
        worker.stop()


def latency_and_idle(
    work: Path, transport: str, sends: int, idle: float
) -> tuple[float, float, float | None]:
    worker = Worker(work, transport, "procexec", f"latency-{transport}")
    try:
        worker.start()
        worker.send("bench.stamp", time.time())
        worker.wait_lines(1, timeout=60)  # started and consuming
        time.sleep(1)
        cpu = None
        if os.path.isdir("/proc"):
            pids = worker.pids()
            before = cpu_seconds(pids)
            time.sleep(idle)
            cpu = 100 * (cpu_seconds(pids) - before) / idle
        for done in range(1, sends + 1):
            time.sleep(random.uniform(0.02, 0.1))
            worker.send("bench.stamp", time.time())
            worker.wait_lines(done + 1, timeout=30)
        delays = sorted(worker.lines()[1:])
        p99 = delays[min(len(delays) - 1, round(0.99 * len(delays)))]
        return 1000 * statistics.median(delays), 1000 * p99, cpu
    finally:
        worker.stop()


def deep(work: Path, transport: str, depth: int) -> float:
    """Messages/s that one channel takes from a queue `depth` messages deep."""
    from kombu import Connection

    from procexec.engine.settings import Settings
    from procexec.workers.celery_app import broker_options

    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(work / f"deep-{transport}-{depth}")})
    url, options = broker_options(settings)
    connection = Connection("filesystem://" if transport == "filesystem" else url)
    connection.transport_options.update(options)
    try:
        channel = connection.default_channel
        for number in range(depth):
            channel._put("deep", {"body": "x", "properties": {"delivery_tag": str(number)}})
        start = time.perf_counter()
        for _ in range(depth):
            channel._get("deep")
        return depth / (time.perf_counter() - start)
    finally:
        connection.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="tasks drained per row")
    parser.add_argument("--sends", type=int, default=100, help="tasks timed for the latency")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--task-ms", type=float, default=5, help="task time of the 3rd column")
    parser.add_argument("--transports", default="procexecfs,filesystem")
    parser.add_argument("--depths", default="1000,10000", help="queue depths of the last table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="procexec-bench-") as folder:
        work = Path(folder)
        (work / "benchapp.py").write_text(APP)
        busy = f"{args.task_ms:g} ms msg/s"
        print(f"{'transport':<12} {'defaults msg/s':>15} {'procexec msg/s':>15} ", end="")
        print(f"{busy:>15} ", end="")
        print(f"{'latency p50 ms':>15} {'p99 ms':>8} {'idle CPU %':>11}", flush=True)
        for transport in args.transports.split(","):
            fast = drain(work, transport, "defaults", args.messages)
            late = drain(work, transport, "procexec", args.messages)
            slow = drain(work, transport, "procexec", args.messages // 2, args.task_ms)
            p50, p99, cpu = latency_and_idle(work, transport, args.sends, args.idle)
            idle = "" if cpu is None else f"{cpu:.3f}"
            rates = f"{fast:>15.0f} {late:>15.0f} {slow:>15.0f}"
            print(f"{transport:<12} {rates} {p50:>15.1f} {p99:>8.1f} {idle:>11}", flush=True)
        depths = [int(depth) for depth in args.depths.split(",") if depth]
        if depths:
            print(f"\n{'transport':<12}", *(f"{f'depth {d:,} msg/s':>18}" for d in depths))
            for transport in args.transports.split(","):
                rates = [deep(work, transport, depth) for depth in depths]
                print(f"{transport:<12}", *(f"{rate:>18.0f}" for rate in rates), flush=True)


if __name__ == "__main__":
    main()
