"""The list call at scale: the seed's queries and more, timed against their floors.

Builds SQLite stores of realistic executions (a few hundred process names, a mix of statuses
and triggers over two years, four phases with log lines) at each size, caches each store under
`--data-dir` (a re-run reuses it), and times, at every size:

- the seed page's three example queries, a broad `_search` (a phrase found in about one
  execution in a hundred) and a selective one (an execution's id), a `_filter` expression and
  a deep `_skip`;
- each through the store call (`store.list_json`, what the API serves from) and over HTTP
  (the real app served by uvicorn in a subprocess, one keep-alive `http.client` connection,
  `Accept-Encoding: identity`);
- beside them, measured in the same run, the floors: the same rows fetched by a hand-written
  SQL statement on the best index (for the deep `_skip`, a keyset page from its first row,
  known beforehand; for the id search, its match read by rowid), and the same response
  bytes served by a bare route (a plain Starlette route on the same server, behind the same
  middleware, returning precomputed bytes). A call and its floors are timed in turns of 20
  calls, so that the machine's drift over a run weighs on all alike;
- and, for scale, a third: the SQL floor as a route on the same server (its statement's rows
  joined into the array, no auth, no parsing), which says what any list call reading those
  rows could get over HTTP here.

The documents are built in one transaction with `executemany`; the search index and the
counters are then filled in bulk (the path a store of an earlier version takes when it opens).

It prints p50 and p99 of each, in milliseconds, and the goals (store within 2x of the SQL
floor, HTTP within 1.5x of the HTTP floor, the seed queries' p50 under 20 ms at 1M documents,
1M within 2x of 10k). Nothing is asserted: it measures.

    python bench/list_query.py                       # 10k, 100k and 1M (the 1M build takes minutes)
    python bench/list_query.py --sizes 10000,100000  # smaller
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procexec.engine.domain import Scope  # noqa: E402
from procexec.engine.query import parse_query  # noqa: E402
from procexec.engine.store.sqlite import SQLiteStore, schema  # noqa: E402
from procexec.engine.store.sqlite.store import compact_json  # noqa: E402
from procexec.engine.tokens import create_token  # noqa: E402

#: bump when the generated documents change, so that cached stores are rebuilt
DATA_VERSION = 2
ENVIRONMENT = "production"
FIRST_DAY = datetime(2019, 8, 1, tzinfo=UTC)
DAYS = 731  # two years, up to 2021-07-31
PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")
SOURCES = (
    "ECB", "BOE", "FED", "BOJ", "SNB", "RBA", "BOC", "RBNZ", "NORGES", "RIKS", "CME", "ICE",
    "EEX", "LME", "NYMEX", "PLATTS", "ARGUS", "NBP", "TTF", "PJM", "ERCOT", "CAISO", "NORDPOOL",
    "EPEX", "OMIE",
)  # fmt: skip
DATASETS = (
    "FX", "RATES", "CURVES", "SETTLE", "FWD", "SPOT", "VOL", "INDEX", "FUTURES", "OPTIONS",
    "WEATHER", "LOAD",
)  # fmt: skip
ERRORS = (
    "Timeout after 300 seconds waiting for the source",
    "Connection refused by sdw-wsrest.example.com:443",
    "HTTP 503 Service Unavailable from the publisher",
    "KeyError: 'OBS_VALUE' in the response",
    "File not found: the publisher has not released today's file",
    "Validation failed: 3 values out of range",
)
USERS = ("com_walkfares", "alice", "bob", "ops_robot")
STATUSES = (
    ("success", 0.855),
    ("failed", 0.08),
    ("warning", 0.035),
    ("running", 0.01),
    ("triggered", 0.01),
    ("waiting", 0.005),
    ("retrying", 0.005),
)
TRIGGERS = (("scheduled", 0.8), ("manual", 0.15), ("subscription", 0.05))


def names() -> list[str]:
    """A few hundred process names, ECB_FX among them."""
    return [f"{source}_{dataset}" for source in SOURCES for dataset in DATASETS]


_DAY_NAMES: dict[int, str] = {}
_EPOCH_MS = int(FIRST_DAY.timestamp() * 1000)


def _day(ms: int) -> str:
    day = ms // 86_400_000
    text = _DAY_NAMES.get(day)
    if text is None:
        text = _DAY_NAMES[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
    return text


def _iso(ms: int) -> str:
    """`2021-07-01T16:30:13.390Z` of milliseconds since the epoch (fast: a few million calls)."""
    seconds, millis = divmod(ms % 86_400_000, 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{_day(ms)}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{millis:03d}Z"


def _stamp(ms: int) -> str:
    """A log line's stamp: `2021-07-01T16:30:13.390000000Z[UTC]`."""
    return f"{_iso(ms)[:-1]}000000Z[UTC]"


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    roll = rng.random()
    for value, weight in table:
        roll -= weight
        if roll < 0:
            return value
    return table[-1][0]


def execution(rng: random.Random, process_names: list[str]) -> dict[str, Any]:
    """One realistic execution document, in the seed page's shape."""
    name = rng.choice(process_names)
    start = _EPOCH_MS + rng.randrange(DAYS * 86_400_000)
    status = _pick(rng, STATUSES)
    trigger = _pick(rng, TRIGGERS)
    user = rng.choice(USERS)
    if trigger == "scheduled":
        fire = datetime.fromtimestamp(start // 60_000 * 60, UTC)
        reason = f"crontab({name},{fire:%a %b %d %Y %H:%M:%S} GMT+0000 (Greenwich Mean Time))"
    elif trigger == "manual":
        reason = f"Manually triggered by {user}"
    else:
        reason = f"Subscription: {rng.choice(process_names)} updated"
    failing = rng.randrange(4) if status == "failed" else -1
    done = {"running": rng.randrange(4), "triggered": 0, "waiting": rng.randrange(4)}.get(
        status, rng.randrange(4) if status == "retrying" else 4
    )
    error = rng.choice(ERRORS)
    phases = []
    moment = start
    for index, phase in enumerate(PHASES):
        if index > done or (failing >= 0 and index > failing):
            break
        began = moment
        moment += rng.randrange(200, 5000)
        log = [f"{_stamp(began)} info Starting {phase}"]
        if phase == "EXTRACT":
            log.append(
                f"{_stamp(began)} info Fetching {rng.randrange(10, 400)} records from {name}"
            )
        if phase == "LOAD":
            log.append(f"{_stamp(moment)} info Updated {rng.randrange(1, 60)} series")
        entry: dict[str, Any] = {"name": phase, "start": _iso(began)}
        if index == failing:
            log.append(f"{_stamp(moment)} error {error}")
            entry.update(status="failed", message=error, log=log, end=_iso(moment))
        elif index == done:
            entry.update(status="running", message=f"Running {phase}", log=log)
        else:
            log.append(f"{_stamp(moment)} info Completed {phase}")
            entry.update(status="success", message=f"Completed {phase}", log=log, end=_iso(moment))
        phases.append(entry)
    doc: dict[str, Any] = {
        "_id": f"{rng.getrandbits(96):024x}",
        "service": "ETL",
        "name": name,
        "environment": ENVIRONMENT,
        "trigger": trigger,
        "status": status,
        "message": {
            "success": "Completed Successfully",
            "warning": "Completed with warnings",
            "failed": f"Failed in {PHASES[max(failing, 0)]}: {error}",
        }.get(status, f"{status.capitalize()}"),
        "reason": reason,
        "start": _iso(start),
        "runAs": user,
        "phases": phases,
    }
    if status in ("success", "warning", "failed"):
        doc["end"] = _iso(moment)
    if status in ("success", "warning"):
        count = rng.randrange(1, 60)
        doc["loaderMessage"] = f"Updated {count} series for {_day(start)}"
        doc["data"] = {
            "curves": {},
            "series": {_day(start): [f"#{name}.S{i}" for i in range(min(count, 3))]},
        }
    return doc


def build(path: Path, size: int) -> None:
    """A store of `size` executions at `path`: inserted in one transaction, then indexed."""
    partial = path.with_suffix(".building")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    store = SQLiteStore(partial)
    conn = store._connect()
    # Bulk load: the search index and the counters are filled at the end, in bulk (the path
    # a store made by an earlier version takes when it opens).
    for trigger in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trigger[0]}")
    for table in (
        "executions_fts",
        "execution_totals",
        "execution_counts",
        "execution_days",
        "execution_months",
    ):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA cache_size = -262144")
    rng = random.Random(size)
    process_names = names()
    conn.execute("BEGIN")
    for chunk in range(0, size, 10_000):
        docs = [execution(rng, process_names) for _ in range(min(10_000, size - chunk))]
        conn.executemany(
            "INSERT INTO executions (id, doc) VALUES (?, ?)",
            [(doc["_id"], compact_json(doc)) for doc in docs],
        )
        print(f"\r  {path.name}: {chunk + len(docs):>9,} documents", end="", flush=True)
    conn.execute("COMMIT")
    loaded = time.perf_counter()
    schema.ensure_list_schema(conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    partial.rename(path)
    print(
        f"\r  {path.name}: {size:,} documents in {loaded - started:.0f} s, "
        f"search index and counters in {time.perf_counter() - loaded:.0f} s"
    )


# --- the queries -----------------------------------------------------------------------------

PAGE = 100


@dataclass(frozen=True)
class Case:
    label: str
    params: list[tuple[str, str]]
    #: the hand-written statement on the best index, and its parameters
    floor_sql: str
    floor_params: tuple[Any, ...]


def cases(size: int, conn: sqlite3.Connection) -> list[Case]:
    day_low, day_high = "2021-07-19T00:00:00.000Z", "2021-07-23T23:59:59.999Z"
    deep = size // 2
    # a selective search: one execution's id (the newest ECB_FX run), one match at every size
    (one_id,) = conn.execute(
        "SELECT id FROM executions INDEXED BY ix_list_name WHERE environment = ? AND name = ? "
        "ORDER BY start DESC, id DESC LIMIT 1",
        (ENVIRONMENT, "ECB_FX"),
    ).fetchone()
    # the deep page's first row (found once, the slow way)
    deep_first = conn.execute(
        "SELECT start, id FROM executions INDEXED BY ix_list_start WHERE environment = ? "
        "ORDER BY start DESC, id DESC LIMIT 1 OFFSET ?",
        (ENVIRONMENT, deep),
    ).fetchone()
    return [
        Case(
            "seed 1: name=ECB_FX",
            [("name", "ECB_FX")],
            "SELECT doc FROM executions INDEXED BY ix_list_name "
            "WHERE environment = ? AND name = ? ORDER BY start DESC, id DESC LIMIT ?",
            (ENVIRONMENT, "ECB_FX", PAGE),
        ),
        Case(
            "seed 2: name=ECB_FX&start=range(…)",
            [("name", "ECB_FX"), ("start", "range(2021-07-19,2021-07-23)")],
            "SELECT doc FROM executions INDEXED BY ix_list_name "
            "WHERE environment = ? AND name = ? AND start >= ? AND start <= ? "
            "ORDER BY start DESC, id DESC LIMIT ?",
            (ENVIRONMENT, "ECB_FX", day_low, day_high, PAGE),
        ),
        Case(
            "seed 3: status=failed&start=range(…)",
            [("status", "failed"), ("start", "range(2021-07-19,2021-07-23)")],
            "SELECT doc FROM executions INDEXED BY ix_list_status "
            "WHERE environment = ? AND status = ? AND start >= ? AND start <= ? "
            "ORDER BY start DESC, id DESC LIMIT ?",
            (ENVIRONMENT, "failed", day_low, day_high, PAGE),
        ),
        Case(
            '_search="connection refused"',
            [("_search", '"connection refused"')],
            "SELECT doc FROM executions WHERE rowid IN (SELECT rowid FROM executions_fts "
            "WHERE executions_fts MATCH ?) AND environment = ? "
            "ORDER BY start DESC, id DESC LIMIT ?",
            ('"connection refused"', ENVIRONMENT, PAGE),
        ),
        Case(
            "_search=<one execution's id>",
            [("_search", one_id)],
            # its match read by rowid (an index of the list's order would be walked instead)
            "SELECT doc FROM executions NOT INDEXED WHERE rowid IN (SELECT rowid FROM "
            "executions_fts WHERE executions_fts MATCH ?) AND environment = ? "
            "ORDER BY start DESC, id DESC LIMIT ?",
            (f'"{one_id}"', ENVIRONMENT, PAGE),
        ),
        Case(
            "_filter=(failed or running) and ECB_FX",
            [("_filter", "(status=failed or status=running) and name=ECB_FX")],
            "SELECT doc FROM executions INDEXED BY ix_list_name "
            "WHERE environment = ? AND name = ? AND status IN (?, ?) "
            "ORDER BY start DESC, id DESC LIMIT ?",
            (ENVIRONMENT, "ECB_FX", "failed", "running", PAGE),
        ),
        Case(
            "_skip=size/2 (deep)",
            [("_skip", str(deep))],
            # the page's first row known: a keyset page, where OFFSET would walk `deep` entries
            "SELECT doc FROM executions INDEXED BY ix_list_start "
            "WHERE environment = ? AND (start, id) <= (?, ?) ORDER BY start DESC, id DESC LIMIT ?",
            (ENVIRONMENT, *deep_first, PAGE),
        ),
    ]


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


#: calls of a query and of its floor are timed in turns of this many
TURN = 20


def timings(*calls: Callable[[], Any], repeat: int) -> list[tuple[float, float]]:
    """p50 and p99 of `repeat` calls of each of `calls` (a call, then its floors), in
    milliseconds (after two warm-up calls of each), taken in turns of `TURN` calls: the
    machine's drift over the run (another process waking, the CPU's clock) weighs on all
    alike, while each runs mostly after itself, with the caches it leaves (a floor that walks
    a million index entries would otherwise leave the next call nothing warm)."""
    spent: list[list[float]] = [[] for _ in calls]
    for _ in range(2):
        for call in calls:
            call()
    for turn in range(0, repeat, TURN):
        for call, times in zip(calls, spent, strict=True):
            for _ in range(min(TURN, repeat - turn)):
                began = time.perf_counter()
                call()
                times.append((time.perf_counter() - began) * 1000)
    return [_percentiles(times) for times in spent]


def _percentiles(spent: list[float]) -> tuple[float, float]:
    spent.sort()
    p99 = spent[min(len(spent) - 1, round(0.99 * (len(spent) - 1)))]
    return statistics.median(spent), p99


# --- HTTP ----------------------------------------------------------------------------------


def serve(db: str, port: int, data_dir: str) -> None:
    """The server process: the real app, plus a bare route serving bytes registered with PUT,
    and a minimal route running a registered SQL floor (its rows joined, nothing else)."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from procexec.api.app import create_app
    from procexec.engine.settings import Settings

    settings = Settings.from_env({"PROCEXEC_DATA_DIR": data_dir})
    app = create_app(settings, store=SQLiteStore(db), dispatch=lambda *_: None)
    floors: dict[str, tuple[bytes, str]] = {}

    async def bare(request: Request) -> Response:
        if request.method == "PUT":
            floors[request.path_params["key"]] = (
                await request.body(),
                request.headers["x-total-count"],
            )
            return Response(status_code=204)
        body, total = floors[request.path_params["key"]]
        return Response(body, media_type="application/json", headers={"x-total-count": total})

    statements: dict[str, tuple[str, list[Any]]] = {}
    conn = sqlite3.connect(db, isolation_level=None)

    async def minimal(request: Request) -> Response:
        """The SQL floor as a route: its statement's rows joined, as the list call's are."""
        if request.method == "PUT":
            sql, params = json.loads(await request.body())
            statements[request.path_params["key"]] = (
                sql.replace("SELECT doc ", "SELECT CAST(doc AS BLOB) ", 1),
                params,
            )
            return Response(status_code=204)
        sql, params = statements[request.path_params["key"]]
        body = b"[" + b",".join(row[0] for row in conn.execute(sql, params).fetchall()) + b"]"
        return Response(body, media_type="application/json", headers={"x-total-count": "0"})

    app.router.routes.insert(0, Route("/bench/floor/{key}", bare, methods=["GET", "PUT"]))
    app.router.routes.insert(0, Route("/bench/sql/{key}", minimal, methods=["GET", "PUT"]))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=3600,
    )


class Server:
    """`serve` in a subprocess (so that client and server do not share a GIL), and a client."""

    def __init__(self, path: Path, store: SQLiteStore, data_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.token = create_token(store, "bench", Scope.READ)
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(path), str(self.port), str(data_dir)]
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
                self.conn.connect()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the bench server did not start") from None
                time.sleep(0.1)
        self.floors = 0

    def get(self, path: str) -> tuple[int, bytes, str]:
        self.conn.request(
            "GET",
            path,
            headers={"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"},
        )
        response = self.conn.getresponse()
        body = response.read()
        return response.status, body, response.getheader("x-total-count") or ""

    def floor(self, body: bytes, total: str) -> str:
        """Register bytes for the bare route; returns its path."""
        return self._register("floor", body, {"x-total-count": total})

    def minimal(self, case: Case) -> str:
        """Register the case's SQL floor for the minimal route; returns its path."""
        statement = json.dumps([case.floor_sql, list(case.floor_params)])
        return self._register("sql", statement.encode(), {})

    def _register(self, route: str, body: bytes, headers: dict[str, str]) -> str:
        """PUT `body` to a new path of the bench's `route`; returns the path (with a token: the
        API refuses a body without one before its route sees it)."""
        self.floors += 1
        path = f"/bench/{route}/{self.floors}"
        headers = {**headers, "Authorization": f"Bearer {self.token}"}
        self.conn.request("PUT", path, body=body, headers=headers)
        self.conn.getresponse().read()
        return path

    def stop(self) -> None:
        self.conn.close()
        self.process.terminate()
        self.process.wait(timeout=30)


# --- the run -------------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    label: str
    store: tuple[float, float]
    sql: tuple[float, float]
    http: tuple[float, float] | None
    bare: tuple[float, float] | None
    #: a route that only runs the SQL floor and joins its rows (no auth, no parsing)
    minimal: tuple[float, float] | None
    total: int
    rows: int
    seed: bool


def measure(path: Path, size: int, repeat: int, http_repeat: int, data_dir: Path) -> Iterator[Row]:
    store = SQLiteStore(path)
    conn = store._connect()
    server = Server(path, store, data_dir) if http_repeat else None
    try:
        for case in cases(size, conn):
            query = parse_query(case.params, ENVIRONMENT)
            texts, total = store.list_json(query)
            floor_rows = conn.execute(case.floor_sql, case.floor_params).fetchall()
            if [json.loads(t)["_id"] for t in texts] != [
                json.loads(r[0])["_id"] for r in floor_rows
            ]:
                raise SystemExit(f"{case.label}: the store and the SQL floor disagree")
            store_t, sql_t = timings(
                partial(store.list_json, query),
                partial(_fetch, conn, case.floor_sql, case.floor_params),
                repeat=repeat,
            )
            http_t = bare_t = minimal_t = None
            if server is not None:
                path_qs = "/service/process-exec/v1?" + urllib.parse.urlencode(case.params)
                status, body, header_total = server.get(path_qs)
                if status != 200 or header_total != str(total):
                    raise SystemExit(f"{case.label}: HTTP {status} {body[:200]!r}")
                floor_path = server.floor(body, header_total)
                if server.get(floor_path)[1] != body:
                    raise SystemExit(f"{case.label}: the bare route serves other bytes")
                minimal_path = server.minimal(case)
                if json.loads(server.get(minimal_path)[1]) != json.loads(body):
                    raise SystemExit(f"{case.label}: the minimal route serves other rows")
                http_t, bare_t, minimal_t = timings(
                    partial(server.get, path_qs),
                    partial(server.get, floor_path),
                    partial(server.get, minimal_path),
                    repeat=http_repeat,
                )
            yield Row(
                size,
                case.label,
                store_t,
                sql_t,
                http_t,
                bare_t,
                minimal_t,
                total,
                len(texts),
                case.label.startswith("seed"),
            )
    finally:
        if server is not None:
            server.stop()
        store.close()


def _ms(pair: tuple[float, float] | None) -> str:
    return f"{'-':>15}" if pair is None else f"{pair[0]:7.2f} {pair[1]:7.2f}"


def report(rows: list[Row]) -> None:
    """The table, then each goal: met (ok) or missed (MISS), with the figures behind it."""
    print()
    print(
        f"{'size':>9} {'query':<38} {'rows':>4} {'total':>7} | {'store p50   p99':>15} "
        f"{'SQL p50    p99':>15} {'x':>5} | {'HTTP p50   p99':>15} {'bare p50   p99':>15} {'x':>5}"
        f" | {'SQL route p50':>13} {'x':>5}"
    )
    for row in rows:
        ratio = row.store[0] / row.sql[0] if row.sql[0] else float("inf")
        http_ratio = f"{row.http[0] / row.bare[0]:5.2f}" if row.http and row.bare else "    -"
        minimal = (
            f"{row.minimal[0]:13.2f} {row.minimal[0] / row.bare[0]:5.2f}"
            if row.minimal and row.bare
            else f"{'-':>13}     -"
        )
        print(
            f"{row.size:>9,} {row.label:<38} {row.rows:>4} {row.total:>7} | {_ms(row.store)} "
            f"{_ms(row.sql)} {ratio:5.2f} | {_ms(row.http)} {_ms(row.bare)} {http_ratio} | "
            f"{minimal}"
        )

    def verdict(ok: bool) -> str:
        return "ok  " if ok else "MISS"

    print("\ngoals, on p50 (not asserted):")
    for row in rows:
        print(
            f"  {verdict(row.store[0] <= 2 * row.sql[0])} store <= 2x SQL floor     "
            f"{row.size:>9,} {row.label}: {row.store[0]:.2f} vs {row.sql[0]:.2f} ms"
        )
    for row in rows:
        if row.http and row.bare:
            # beside it, what a route that only runs the SQL floor gets (no auth, no parsing)
            minimal = f" (SQL route {row.minimal[0] / row.bare[0]:.2f}x)" if row.minimal else ""
            print(
                f"  {verdict(row.http[0] <= 1.5 * row.bare[0])} HTTP <= 1.5x HTTP floor  "
                f"{row.size:>9,} {row.label}: {row.http[0]:.2f} vs {row.bare[0]:.2f} ms{minimal}"
            )
    biggest = max(r.size for r in rows)
    smallest = min(r.size for r in rows)
    for row in rows:
        if row.seed and row.size == biggest:
            spent = (row.http or row.store)[0]
            print(
                f"  {verdict(spent < 20)} seed query < 20 ms      {row.size:>9,} {row.label}: "
                f"{spent:.2f} ms ({'HTTP' if row.http else 'store'})"
            )
    if biggest != smallest:
        for row in rows:
            if row.size != biggest:
                continue
            small = next(r for r in rows if r.size == smallest and r.label == row.label)
            # beside each, how its floor grew: a page that holds more rows at the larger size
            # costs more to read, by index or not
            for kind, big_t, small_t, floors in (
                ("store", row.store, small.store, (row.sql, small.sql)),
                ("HTTP ", row.http, small.http, (row.bare, small.bare)),
            ):
                if big_t and small_t and floors[0] and floors[1]:
                    print(
                        f"  {verdict(big_t[0] <= 2 * small_t[0])} {kind} {biggest:,} <= 2x "
                        f"{smallest:,}  {row.label}: {big_t[0]:.2f} vs {small_t[0]:.2f} ms "
                        f"({row.rows} vs {small.rows} rows, {row.total} vs {small.total} total; "
                        f"floor {floors[0][0]:.2f} vs {floors[1][0]:.2f} ms)"
                    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1], int(argv[2]), argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument(
        "--data-dir",
        default=str(ROOT / ".procexec" / "bench"),
        help="where built stores are cached",
    )
    parser.add_argument("--repeat", type=int, default=200, help="store and SQL calls per query")
    parser.add_argument(
        "--http-repeat", type=int, default=200, help="HTTP calls per query (0: no HTTP)"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the stores again")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip()]
    rows: list[Row] = []
    for size in sizes:
        path = data_dir / f"list_query_v{DATA_VERSION}_{size}.db"
        if args.rebuild or not path.exists():
            build(path, size)
        rows.extend(measure(path, size, args.repeat, args.http_repeat, data_dir))
    print(
        f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    report(rows)


if __name__ == "__main__":
    main()
