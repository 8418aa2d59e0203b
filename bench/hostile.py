"""Hostile requests against the real API: how long each attack takes to be answered, beside an
ordinary call, and another client's latency while it runs (issue 15).

Builds a SQLite store (`--runs` ordinary executions, and a few whose values a hostile pattern
almost matches, `--long` characters long), starts `procexec api` on it in a subprocess (real
uvicorn, its own interpreter), then for each entry of `ATTACKS`:

- sends it `--repeat` times on one keep-alive connection: its status and how long it took to be
  answered (p50 and max, ms);
- sends it again and again from one client for `--seconds`, while another client sends the
  ordinary call (`ORDINARY`): that client's latency meanwhile (p50, p99, max), beside its
  latency alone, measured first.

Then, unless `--slow 0`, slowloris (`bench/slowloris.py`): `--slow` connections that send a
request line and a header line every `--slow-interval` seconds and never end their headers,
from one address and then from many (`--slow-sources`), for `--slow-seconds` each, beside
another client's calls on fresh connections: what the server did with the slow connections,
that client's p50, p99 and lost calls, and the API's memory before and after.

Then, unless `--large 0`, large answers (`bench/large_answers.py`): `--large` executions with
long logs, asked for in pages past `PROCEXEC_MAX_ANSWER_BYTES` and within it (JSON, CSV, XML,
`_distinct`, one execution), each again and again beside another client's calls: that client's
p50 and p99, and the API's memory at the start, at its highest and after.

Each attack is an entry of `ATTACKS` (an `Attack`: a name, a method, a path, parameters,
headers, a body, whether it carries the read token, and how many copies are sent at once):
more attacks go in as more entries. Beside each, the API's resident memory (RSS) at its most
while the attack ran, against the API's at the start, and whether the attack was answered
within the read's time limit (`--read-timeout`) plus a second ("late" when not). It prints a
table; nothing is asserted.

The reads' attacks ("every read bounded from its first byte") want a store of some size:
their executions carry four phases with a log line each and a `data.series` of their own, so
that `_distinct=data.series` and `_distinct=phases.log` read every one of them.

    python bench/hostile.py                      # the defaults
    python bench/hostile.py --seconds 1 --repeat 3 --runs 200
    python bench/hostile.py --slow 0 --no-bodies --runs 300000   # the reads' attacks at scale
    python bench/hostile.py --slow 5000 --slow-sources 1,100 --slow-seconds 20
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import slowloris  # noqa: E402  (bench/, beside this script)

from procexec.engine.domain import Scope  # noqa: E402
from procexec.engine.store.sqlite import SQLiteStore  # noqa: E402
from procexec.engine.tokens import create_token  # noqa: E402

BASE = "/service/process-exec"


@dataclass(frozen=True)
class Attack:
    """A request of the API, sent as it is (`auth`: with the read token)."""

    name: str
    params: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    path: str = "/v1"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    auth: bool = True
    #: how many copies are sent at once, each on its own connection
    together: int = 1


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _form(name: str, params: dict[str, str], together: int = 1) -> Attack:
    """A list call whose query travels in a form body."""
    body = urllib.parse.urlencode(params, safe=",").encode()
    return Attack(name, headers=FORM, body=body, together=together)


def _nested(depth: int) -> str:
    spec: dict[str, object] = {"data.series.x": 1}
    for _ in range(depth):
        spec = {"$nor": [spec, {"phases.log": "x"}]}
    return json.dumps(spec)


_Z = "Z" * 1000
_PROJECT = ",".join(f"data.f{n}" for n in range(5400))  # 58 KB
_FIELDS_10K = ",".join(f"data.f{n}" for n in range(10_000))


def read_attacks() -> list[Attack]:
    """The attacks on reads: queries whose reading, checking or answer grows with their size."""
    return [
        # controls: as many clients of the ordinary call, what their number alone costs
        Attack("control: ordinary x6 at once", ORDINARY.params, together=6),
        Attack("control: ordinary x40 at once", ORDINARY.params, together=40),
        Attack("_project 5,400 fields (58 KB URL)", (("_project", _PROJECT),)),
        _form("_project 10,000 fields, form body", {"_project": _FIELDS_10K}),
        Attack("_project 5,400 fields x40 at once", (("_project", _PROJECT),), together=40),
        _form(
            "start=in() 95,000 values, 1 MB form",
            {"start": "in(" + ",".join(["2024-01-01"] * 95_000) + ")"},
        ),
        _form(
            "relaxed $in 844 KB, form body",
            {"_filter": "{name:{$in:[" + ",".join(map(str, range(100_000, 220_000))) + "]}}"},
        ),
        Attack("lone surrogate in _filter", (("_filter", '{"name":"\\ud800"}'),)),
        Attack(
            "lone surrogate in $match",
            (("_aggregate", '[{"$match":{"name":"\\ud800"}},{"$count":"n"}]'),),
        ),
        Attack("data.x=in(0,…,499)", (("data.x", "in(" + ",".join(map(str, range(500))) + ")"),)),
        Attack("not 15 deep", (("_filter", "not " * 15 + "data.series.x=1"),)),
        Attack("$nor 15 deep", (("_filter", _nested(15)),)),
        Attack("_distinct=data.series", (("_distinct", "data.series"),)),
        Attack("_distinct=phases.log x6 at once", (("_distinct", "phases.log"),), together=6),
        Attack("1,000-char _aggregate operator", (("_aggregate", f'[{{"${_Z}":{{}}}}]'),)),
        Attack("1,000-char _filter operator", (("_filter", f'{{"${_Z}":1}}'),)),
        Attack(
            "1,000-char $project name",
            (
                (
                    "_aggregate",
                    json.dumps(
                        [{"$group": {"_id": None, "n": {"$sum": 1}}}, {"$project": {_Z: 1}}]
                    ),
                ),
            ),
        ),
    ]


#: the other client's call: a page of one status, off an index
ORDINARY = Attack("ordinary: status=success&_limit=10", (("status", "success"), ("_limit", "10")))


def _regex_paths(label: str, key: str, pattern: str) -> list[Attack]:
    """One attack per path that takes a pattern."""
    group = {"$group": {"_id": "$status", "n": {"$sum": 1}}}
    literal = pattern.replace("/", "\\/")
    return [
        Attack(f"{label} regex()", ((key, f"regex({pattern})"),)),
        Attack(f"{label} $regex", (("_filter", json.dumps({key: {"$regex": pattern}})),)),
        Attack(f"{label} /…/", (("_filter", f"{{{key}: /{literal}/}}"),)),
        Attack(
            f"{label} $match",
            (("_aggregate", json.dumps([{"$match": {key: {"$regex": pattern}}}, group])),),
        ),
    ]


#: every attack, in the order printed: add entries for more
ATTACKS: list[Attack] = [
    # regular expressions: exponential for a backtracking engine, linear for RE2
    *_regex_paths("_id ^.{7}([0-9a-f-]+)+Z", "_id", "^.{7}([0-9a-f-]+)+Z"),
    *_regex_paths("name (a+)+$", "name", "(a+)+$"),
    *_regex_paths("name (a|aa)+$", "name", "(a|aa)+$"),
    *_regex_paths("message (.*a){20}", "message", "(.*a){20}"),
    # what only a backtracking engine can do: refused when the query is read
    Attack("backreference (a+)\\1$", (("name", "regex((a+)\\1$)"),)),
    Attack("lookahead ^(?=a)a+$", (("name", "regex(^(?=a)a+$)"),)),
    # typos a scheduler would read as "no failures" if they were answered with []: 400s
    Attack("typo stauts=failed", (("stauts", "failed"),)),
    Attack("typo _filter=status==failed", (("_filter", "status==failed"),)),
    Attack("typo name=in(ECB_FX,DEMO", (("name", "in(ECB_FX,DEMO"),)),
    Attack("typo _project=nope", (("_project", "nope"),)),
    Attack("NUL name=a\\0b", (("name", "a\x00b"),)),
    Attack("no token", (("status", "failed"),), auth=False),
    *read_attacks(),
]


def _doc(run_id: str, status: str, name: str, message: str, day: int) -> dict[str, object]:
    start = f"2024-01-{1 + day % 28:02d}T00:00:00.000Z"
    return {
        "_id": run_id,
        "service": "ETL",
        "name": name,
        "environment": "production",
        "trigger": "manual",
        "status": status,
        "message": message,
        "start": start,
        "end": start,
        "runAs": "bench",
        "phases": [
            {"name": phase, "status": "success", "log": [f"{start} info {phase} of {run_id}"]}
            for phase in ("EXTRACT", "TRANSFORM", "LOAD", "REPORT")
        ],
        "data": {"series": {start[:10]: [f"#S.{run_id}:SPOT"]}},
    }


def build(path: Path, runs: int, long: int) -> str:
    """The store: `runs` ordinary executions and ten near matches; returns a read token."""
    store = SQLiteStore(path)
    hexes = "0123456789abcdef-" * (long // 17)
    conn = store._connect()
    conn.execute("BEGIN")  # one transaction: a store of 300,000 in a minute, not in ten
    for i in range(runs):
        status = ("success", "failed", "running")[i % 3]
        store.insert(_doc(f"run{i:07d}", status, f"PROC_{i % 50}", "Completed", i))
    conn.execute("COMMIT")
    for i in range(10):
        near = _doc(f"h{i:06d}-{hexes}!", "failed", "a" * long + "!", "a" * 19 + "b" * long, i)
        store.insert(copy.deepcopy(near))
    token = create_token(store, "bench", Scope.READ)
    store.close()
    return token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Api:
    port: int
    token: str

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def send(self, conn: http.client.HTTPConnection, attack: Attack) -> tuple[int, float]:
        """The attack's status and how long it took to be answered, in ms."""
        url = f"{BASE}{attack.path}"
        if attack.params:
            url += "?" + urllib.parse.urlencode(attack.params, safe=",")
        headers = {"Accept-Encoding": "identity", **attack.headers}
        if attack.auth:
            headers["Authorization"] = f"Bearer {self.token}"
        began = time.perf_counter()
        conn.request(attack.method, url, body=attack.body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.getheader("connection", "").lower() == "close":
            conn.close()
        return response.status, elapsed


def start_api(data: Path, read_timeout: float = 10.0) -> Iterator[tuple[int, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCEXEC_")}
    env["PROCEXEC_DATA_DIR"] = str(data)
    env["PROCEXEC_READ_TIMEOUT_SECONDS"] = str(read_timeout)
    procexec = str(Path(sys.executable).parent / "procexec")
    api = subprocess.Popen(
        [procexec, "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if api.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("procexec api did not start") from None
                time.sleep(0.1)
        yield port, api.pid
    finally:
        api.terminate()
        api.wait(timeout=30)


def latencies(api: Api, attack: Attack, seconds: float, stop: threading.Event) -> list[float]:
    """The ordinary call's latencies (ms) for `seconds`, or until `stop`."""
    conn = api.connect()
    found: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until and not stop.is_set():
        found.append(api.send(conn, attack)[1])
    conn.close()
    return found


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The highest RSS of a process, sampled every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mb = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mb = max(self.mb, rss_mb(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, rss_mb(self.pid))


def timed(api: Api, attack: Attack) -> list[tuple[int, float]]:
    """`attack` sent `attack.together` times at once, each on a connection of its own: the
    status and milliseconds to the answer of each."""
    found: list[tuple[int, float]] = []

    def one() -> None:
        conn = api.connect()
        try:
            found.append(api.send(conn, attack))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(attack.together)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def under_attack(api: Api, attack: Attack, seconds: float) -> tuple[list[float], int]:
    """The ordinary call's latencies while `attack.together` clients send `attack` over and
    over; and how many attacks were answered meanwhile."""
    stop = threading.Event()
    answered = 0

    def attacker() -> None:
        nonlocal answered
        conn = api.connect()
        while not stop.is_set():
            api.send(conn, attack)
            answered += 1
        conn.close()

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(attack.together)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the attack under way
    found = latencies(api, ORDINARY, seconds, threading.Event())
    stop.set()
    for thread in threads:
        thread.join()
    return found, answered


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000, help="ordinary executions stored")
    parser.add_argument("--long", type=int, default=5000, help="length of near-match values")
    parser.add_argument("--repeat", type=int, default=5, help="times each attack is timed")
    parser.add_argument("--seconds", type=float, default=3.0, help="time under each attack")
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="the API's PROCEXEC_READ_TIMEOUT_SECONDS (an attack answered past it and a second "
        "more is marked late)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated texts: run only the attacks whose name holds one of them",
    )
    parser.add_argument(
        "--no-bodies", action="store_true", help="leave out bench/hostile_bodies.py's attacks"
    )
    parser.add_argument(
        "--large", type=int, default=300, help="executions of ~279 KB for large answers (0: none)"
    )
    parser.add_argument("--slow", type=int, default=3000, help="slowloris connections (0: none)")
    parser.add_argument(
        "--slow-sources",
        default="1,100",
        help="addresses the slowloris connections come from, one attack per number (default "
        "1,100: from one address, then spread over 100)",
    )
    parser.add_argument(
        "--slow-interval", type=float, default=3.0, help="seconds between a slow header's lines"
    )
    parser.add_argument("--slow-seconds", type=float, default=15.0, help="each slowloris's length")
    parser.add_argument(
        "--slow-burst",
        action="store_true",
        help="reopen the connections the server closed all at once at each tick (a connection "
        "flood every tick), instead of spread evenly over it",
    )
    args = parser.parse_args(argv)
    slowloris.raise_open_files(args.slow + 1024)  # the API started below inherits it
    with tempfile.TemporaryDirectory(prefix="procexec-hostile-") as folder:
        data = Path(folder)
        token = build(data / "procexec.db", args.runs, args.long)
        for port, pid in start_api(data, args.read_timeout):
            api = Api(port, token)
            conn = api.connect()
            for _ in range(20):  # warm up
                api.send(conn, ORDINARY)
            alone = [api.send(conn, ORDINARY)[1] for _ in range(200)]
            start_mb = rss_mb(pid)
            print(
                f"{args.runs:,} executions, near matches {args.long:,} characters long; "
                f"{ORDINARY.name}: p50 {statistics.median(alone):.2f} ms, "
                f"p99 {p99(alone):.2f} ms alone; the API's RSS {start_mb:.0f} MB; "
                f"read timeout {args.read_timeout:g} s\n"
            )
            print(
                f"{'attack':38} {'status':>7} | {'answered p50':>12} {'max':>8} | "
                f"another client's call meanwhile: {'p50':>6} {'p99':>7} {'max':>7}  attacks"
                f" | RSS peak"
            )
            late_after = (args.read_timeout + 1) * 1000
            for attack in ATTACKS:
                if args.only and not any(part in attack.name for part in args.only.split(",")):
                    continue
                with Peak(pid) as peak:
                    sent = [one for _ in range(args.repeat) for one in timed(api, attack)]
                    statuses = sorted({status for status, _ in sent})
                    took = [ms for _, ms in sent]
                    other, answered = under_attack(api, attack, args.seconds)
                late = " late" if max(took) > late_after else ""
                print(
                    f"{attack.name:38} {'/'.join(map(str, statuses)):>7} | "
                    f"{statistics.median(took):12.2f} {max(took):8.2f} | "
                    f"{'':33} {statistics.median(other):6.2f} {p99(other):7.2f} "
                    f"{max(other):7.2f}  {answered:7} | {peak.mb:5.0f} MB "
                    f"(+{peak.mb - start_mb:.0f}){late}"
                )
            print(f"\nthe API's RSS at the end {rss_mb(pid):.0f} MB (at the start {start_mb:.0f})")
            conn.close()
            for sources in (int(n) for n in args.slow_sources.split(",") if args.slow > 0):
                print()
                slowloris.attack(
                    port,
                    pid,
                    token,
                    f"{BASE}/v1?{urllib.parse.urlencode(ORDINARY.params)}",
                    count=args.slow,
                    sources=sources,
                    interval=args.slow_interval,
                    seconds=args.slow_seconds,
                    burst=args.slow_burst,
                )
    if args.large > 0:  # large answers, on an API of their own
        print()
        import large_answers  # bench/, beside this script

        large_answers.run(args.large, 279, args.seconds, args.repeat)
    if not args.no_bodies:  # the request-body attacks, on an API of their own
        print()
        import hostile_bodies  # bench/, beside this script

        hostile_bodies.main()


if __name__ == "__main__":
    main()
