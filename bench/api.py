"""Triggers and reads per second through one API process, beside two floors of the same server.

Starts a private redis-server (the broker: triggers are sent to it and, with no worker, only
accumulate), `procexec api` on an SQLite store in a temporary data folder, and the two floors of
`bench/api_floors.py`, plain Starlette apps served by the same uvicorn configuration
(`BoundedHttpProtocol`, the same log level, the interpreter's switch interval the API sets) in
the same kind of subprocess: the bare route, whose two routes answer the bytes the API answered
(a 202 trigger, one execution), and the work route, which does only a trigger's (and a read's)
unavoidable work through procexec's own parts (the same store and broker, `TriggerQueue`,
`store.get` in a worker thread). Then, from `--connections` keep-alive HTTP/1.1 connections
(an asyncio client over raw streams, uvloop when installed), it times in turns of `--seconds`:

- POST /service/process-exec/v1 `{"name": "DEMO", "body": {}}` (each answered 202), and the
  work and bare POSTs beside it;
- GET /service/process-exec/v1/{id} of the executions triggered (each answered 200), and the
  work and bare GETs beside it;

and prints, for each, requests per second, p50 and p99 latency (ms), the server's CPU per
answer, the API's ratios to each floor measured in the same run (medians of the turns' rates,
latencies pooled), the API's CPU per answer split into HTTP (bare), the work (work - bare) and
its own (api - work: framework, auth, checks), and the share of a core the client itself used
(when it nears one core, the client is the bottleneck: use `--clients 2`, which runs the load
from two processes). Nothing is asserted.

`--profile` runs py-spy on the API process during one more POST period and prints where its
samples go (all threads, and within the trigger's work in the threadpool), with the path of
the speedscope file (open it at speedscope.app).

    python bench/api.py                # 3 turns of 5 s per call
    python bench/api.py --quick        # 1 turn of 1.5 s
    python bench/api.py --profile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import api_floors  # noqa: E402

BASE = "/service/process-exec/v1"
#: frames whose share of the GIL's samples is printed whatever their rank
GIL_ALSO = ("TriggerService.trigger", "solve_dependencies", "Celery.send_task", "authenticate")
#: the rows of each call: the API, the work route (a trigger's work alone), the bare route
SIDES = ("api", "work", "bare")
TRIGGER = json.dumps({"name": "DEMO", "body": {}}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the processes -----------------------------------------------------------------------------


class Servers:
    """redis-server, the API and the bare server, each in its own process group, their logs in
    the temporary folder; all stopped, and the folder removed, on `close`."""

    def __init__(self, log_level: str) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="procexec-bench-api-"))
        self.log_level = log_level
        self.redis_port, self.api_port = free_port(), free_port()
        self.bare_port, self.work_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "PROCEXEC_DATA_DIR": str(self.work / "data"),
            "PROCEXEC_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PYTHONPATH": str(ROOT),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self.bare: subprocess.Popen[bytes] | None = None
        self.work_route: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds each server process has used so far."""
        named = {"api": self.api, "work": self.work_route, "bare": self.bare, "redis": self.redis}
        return {name: cpu_seconds(p.pid) for name, p in named.items() if p is not None}

    def spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def wait_port(self, port: int, process: subprocess.Popen[bytes], name: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (self.work / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"{name} exited {process.returncode}:\n{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise SystemExit(f"{name} did not start")

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("bench/api.py needs redis-server (apt-get install redis-server)")
        self.redis = redis = self.spawn(
            "redis", server, "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
        )  # fmt: skip
        self.wait_port(self.redis_port, redis, "redis")
        self.api = self.spawn(
            "api", sys.executable, "-m", "procexec.cli", "api", "--port", str(self.api_port),
            "--log-level", self.log_level,
        )  # fmt: skip
        self.wait_port(self.api_port, self.api, "api")

    def start_bare(self, posted: bytes, got: bytes) -> None:
        (self.work / "post.json").write_bytes(posted)
        (self.work / "get.json").write_bytes(got)
        self.bare = self.spawn(
            "bare", sys.executable, __file__, "--serve-bare", str(self.bare_port),
            str(self.work / "post.json"), str(self.work / "get.json"), self.log_level.lower(),
        )  # fmt: skip
        self.wait_port(self.bare_port, self.bare, "bare")
        self.work_route = self.spawn(
            "work", sys.executable, __file__, "--serve-work", str(self.work_port),
            self.log_level.lower(),
        )  # fmt: skip
        self.wait_port(self.work_port, self.work_route, "work")

    def token(self) -> str:
        from procexec.engine.domain import Scope
        from procexec.engine.settings import Settings
        from procexec.engine.store import open_store
        from procexec.engine.tokens import create_token

        store = open_store(Settings.from_env(self.env).store_url)
        try:
            return create_token(store, "bench", Scope.RUN)
        finally:
            store.close()

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.work, ignore_errors=True)


# --- the run -----------------------------------------------------------------------------------


def call(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One request on a connection of its own; the answer's body (an error unless 2xx)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        if answer.status // 100 != 2:
            raise SystemExit(f"{method} {path}: {answer.status} {data[:300]!r}")
        return data
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid`, all its threads (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def measure(args: argparse.Namespace, servers: Servers) -> None:
    from http_load import load, request

    token = servers.token()  # never printed
    auth = {"Authorization": f"Bearer {token}"}
    post_headers = {**auth, "Content-Type": "application/json"}
    posted = call(servers.api_port, "POST", BASE, post_headers, TRIGGER)
    first = json.loads(posted)["_id"]
    got = call(servers.api_port, "GET", f"{BASE}/{first}", auth)
    servers.start_bare(posted, got)
    ids = [json.loads(call(servers.api_port, "POST", BASE, post_headers, TRIGGER))["_id"]]
    ids += [json.loads(call(servers.api_port, "POST", BASE, post_headers, TRIGGER))["_id"]
            for _ in range(199)]  # fmt: skip
    api, work, bare = servers.api_port, servers.work_port, servers.bare_port
    calls = {  # each call: the API's, the work route's, the bare route's
        "POST trigger": (
            (api, [request("POST", BASE, api, post_headers, TRIGGER)], 202),
            (work, [request("POST", "/work-route", work, post_headers, TRIGGER)], 202),
            (bare, [request("POST", "/bare", bare, post_headers, TRIGGER)], 202),
        ),
        "GET one execution": (
            (api, [request("GET", f"{BASE}/{i}", api, auth) for i in ids], 200),
            (work, [request("GET", f"/work-route/{i}", work, auth) for i in ids], 200),
            (bare, [request("GET", f"/bare/{i}", bare, auth) for i in ids], 200),
        ),
    }
    figures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    warm = min(1.0, args.seconds)
    for turn in range(-1, args.turns):  # turn -1: a warm-up, not kept
        for name, pair in calls.items():
            for side, (port, requests, expected) in zip(SIDES[::-1], pair[::-1], strict=True):
                before = servers.cpu()
                seconds = warm if turn < 0 else args.seconds
                out = load(port, requests, args.connections, seconds, args.clients)
                out["server_cpu"] = {k: v - before[k] for k, v in servers.cpu().items()}
                wrong = {k: v for k, v in out["statuses"].items() if int(k) != expected}
                if wrong:
                    raise SystemExit(f"{name} ({side}): statuses {wrong}, expected {expected}")
                if turn >= 0:
                    figures.setdefault((name, side), []).append(out)
        if turn >= 0:
            print(f"  turn {turn + 1} of {args.turns} done", file=sys.stderr)
    report(args, figures)
    if args.profile:
        profile(args, servers, calls["POST trigger"][0])


def summary(outs: list[dict[str, Any]], side: str) -> dict[str, float]:
    latencies = [x for out in outs for x in out["latencies"]]
    count = sum(out["count"] for out in outs)
    return {
        "rate": statistics.median(out["count"] / out["elapsed"] for out in outs),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "cpu": statistics.median(out["cpu"] / out["elapsed"] for out in outs),
        # CPU milliseconds per answer: the server's own, and redis-server's
        "server": 1000 * sum(out["server_cpu"][side] for out in outs) / count,
        "redis": 1000 * sum(out["server_cpu"]["redis"] for out in outs) / count,
        "count": count,
    }


def report(args: argparse.Namespace, figures: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    load = os.getloadavg()[0]
    print(
        f"\n{args.connections} keep-alive connections, {args.clients} client process(es), "
        f"{args.turns} turns of {args.seconds:g} s per call (rates: medians of the turns; "
        f"latencies: pooled), {os.cpu_count()} cores, load average {load:.1f} at the end"
    )
    print(
        f"{'call':<18} {'':<8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'answers':>8} "
        f"{'server CPU ms/req':>17} {'redis':>6} {'client CPU':>10}"
    )
    for name in ("POST trigger", "GET one execution"):
        rows = {side: summary(figures[(name, side)], side) for side in SIDES}
        for side, row in rows.items():
            print(
                f"{name if side == 'api' else '':<18} {side:<8} {row['rate']:>8,.0f} "
                f"{row['p50']:>7.2f} {row['p99']:>7.2f} {row['count']:>8,.0f} "
                f"{row['server']:>17.3f} {row['redis']:>6.3f} {row['cpu']:>10.0%}"
            )
        api = rows["api"]
        for floor in ("bare", "work"):
            row = rows[floor]
            print(
                f"{'':<18} {'api/' + floor:<8} {api['rate'] / row['rate']:>8.3f} "
                f"{api['p50'] / row['p50']:>7.2f} {api['p99'] / row['p99']:>7.2f} {'':>8} "
                f"{api['server'] / row['server']:>17.2f}"
            )
        bare, work = rows["bare"]["server"], rows["work"]["server"]
        print(
            f"{'':<18} CPU ms/req: HTTP (bare) {bare:.3f} + work (work - bare) {work - bare:.3f}"
            f" + API's own (api - work) {api['server'] - work:.3f} = {api['server']:.3f}"
        )


def profile(args: argparse.Namespace, servers: Servers, post: tuple[int, list[bytes], int]) -> None:
    """py-spy on the API process through two more POST periods: every sample (where the wall
    time goes, SQLite and sockets included), then only the samples holding the GIL."""
    import profiling
    from http_load import load

    assert servers.api is not None
    port, requests, _ = post
    for gil in (False, True):
        output = profiling.output_path("api-post-gil" if gil else "api-post")
        spy = profiling.record(servers.api.pid, output, args.seconds + 1, rate=400, gil=gil)
        time.sleep(0.5)  # py-spy attached
        out = load(port, requests, args.connections, args.seconds, args.clients)
        _, errors = spy.communicate()
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")
        rate = out["count"] / out["elapsed"]
        kind = "holding the GIL" if gil else "every sample"
        print(f"\nprofiled POST period ({kind}): {rate:,.0f} req/s (py-spy slows the API)")
        if gil:  # the interpreter's time (SQLite's own work releases the GIL: not here)
            profiling.print_summary("every thread, holding the GIL", output, also=GIL_ALSO)
            continue
        profiling.print_summary(f"the event loop's thread, {kind}", output, thread="MainThread")
        profiling.print_summary(
            f"the trigger in the threadpool, {kind}", output, within="TriggerService.trigger"
        )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-bare"]:
        api_floors.serve_bare(int(argv[1]), argv[2], argv[3], argv[4])
        return
    if argv[:1] == ["--serve-work"]:
        api_floors.serve_work(int(argv[1]), argv[2])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per call and turn")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--log-level", default="INFO", help="the servers' (procexec api's: INFO)")
    parser.add_argument("--quick", action="store_true", help="1 turn of 1.5 s")
    parser.add_argument("--profile", action="store_true", help="py-spy on the API, POST")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.turns = 1.5, 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    servers = Servers(args.log_level)
    try:
        servers.start()
        measure(args, servers)
    finally:
        servers.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # cleaned up by `Servers.close`
        main()
