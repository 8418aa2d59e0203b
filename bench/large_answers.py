"""Large answers against the real API (`PROCEXEC_MAX_ANSWER_BYTES`): executions with long logs
(`--docs` of about `--doc-kb` KB each), asked for again and again in pages that fit the limit
and in pages that do not, as JSON, CSV and XML; the API's resident memory before, at its
highest and after, and another client's latency beside each attack.

Run by `bench/hostile.py` (unless `--large 0`), or alone:

    python bench/large_answers.py --docs 300 --doc-kb 279 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hostile  # noqa: E402  (bench/, beside this script)
from hostile import ORDINARY, Api, Attack, p99  # noqa: E402
from slowloris import rss_mb  # noqa: E402

from procexec.engine.domain import Scope  # noqa: E402
from procexec.engine.store.sqlite import SQLiteStore  # noqa: E402
from procexec.engine.tokens import create_token  # noqa: E402

#: a log line of the documents, about 280 characters
LINE = "2024-01-01T00:00:00.000000000Z[UTC] info " + "loaded series #ECB_FX.EURUSD:SPOT " * 7

LARGE_ATTACKS = [
    Attack("JSON _limit=10000 (past the limit)", (("_limit", "10000"),)),
    Attack("JSON _limit=100", (("_limit", "100"),)),
    Attack("CSV _limit=100", (("_limit", "100"),), headers={"Accept": "text/csv"}),
    Attack("XML _limit=100", (("_limit", "100"),), headers={"Accept": "application/xml"}),
    Attack("XML _limit=40", (("_limit", "40"),), headers={"Accept": "application/xml"}),
    Attack("_distinct=phases.log", (("_distinct", "phases.log"),)),
    Attack("one execution", path="/v1/large000000"),
]


def build(path: Path, docs: int, doc_kb: int) -> str:
    """`docs` executions whose one phase logged about `doc_kb` KB; returns a read token."""
    store = SQLiteStore(path)
    lines = max(1, doc_kb * 1024 // (len(LINE) + 3))
    for i in range(docs):
        doc = hostile._doc(f"large{i:06d}", "success", f"PROC_{i % 50}", "Completed", i)
        log = [f"{LINE}{i:06d}-{n:04d}" for n in range(lines)]
        doc["phases"] = [{"name": "EXTRACT", "status": "success", "log": log}]
        store.insert(doc)
    token = create_token(store, "bench", Scope.READ)
    store.close()
    return token


def hammer(api: Api, attack: Attack, seconds: float, pid: int) -> tuple[list[float], int, float]:
    """The ordinary call's latencies while one client sends `attack` over and over; how many
    attacks were answered, and the API's highest resident memory meanwhile (MB)."""
    stop = threading.Event()
    answered = 0
    highest = rss_mb(pid)

    def attacker() -> None:
        nonlocal answered
        conn = api.connect()
        while not stop.is_set():
            api.send(conn, attack)
            answered += 1
        conn.close()

    def watch() -> None:
        nonlocal highest
        while not stop.is_set():
            highest = max(highest, rss_mb(pid))
            time.sleep(0.02)

    threads = [threading.Thread(target=attacker), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    found = hostile.latencies(api, ORDINARY, seconds, threading.Event())
    stop.set()
    for thread in threads:
        thread.join()
    return found, answered, highest


def run(docs: int, doc_kb: int, seconds: float, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="procexec-large-") as folder:
        data = Path(folder)
        token = build(data / "procexec.db", docs, doc_kb)
        for port, pid in hostile.start_api(data):
            api = Api(port, token)
            conn = api.connect()
            for _ in range(50):  # warm up
                api.send(conn, ORDINARY)
            alone = [api.send(conn, ORDINARY)[1] for _ in range(300)]
            conn.close()
            start = rss_mb(pid)
            print(
                f"large answers: {docs} executions of about {doc_kb} KB; API memory "
                f"{start:.1f} MB at the start; {ORDINARY.name}: p50 "
                f"{statistics.median(alone):.2f} ms, p99 {p99(alone):.2f} ms alone\n"
            )
            print(
                f"{'attack':34} {'status':>6} {'size MB':>8} | {'answered p50':>12} | "
                f"another client meanwhile: {'p50':>6} {'p99':>7} | {'answered':>8} "
                f"| API MB: highest  after"
            )
            for attack in LARGE_ATTACKS:
                timed = []
                for _ in range(repeat):
                    fresh = api.connect()  # the one above may have sat idle past its timeout
                    timed.append(api.send(fresh, attack))
                    fresh.close()
                size = _size(api, attack)
                statuses = "/".join(str(s) for s in sorted({s for s, _ in timed}))
                other, answered, highest = hammer(api, attack, seconds, pid)
                time.sleep(0.5)
                print(
                    f"{attack.name:34} {statuses:>6} {size:8.1f} | "
                    f"{statistics.median(t for _, t in timed):12.1f} | "
                    f"{'':26}{statistics.median(other):6.2f} {p99(other):7.2f} | "
                    f"{answered:8} | {highest:15.1f} {rss_mb(pid):6.1f}"
                )
            time.sleep(1)
            end = rss_mb(pid)
            print(
                f"\nAPI memory: {start:.1f} MB at the start, {end:.1f} MB after the large "
                f"answers ({end - start:+.1f} MB)"
            )


def _size(api: Api, attack: Attack) -> float:
    """The size of the attack's answer, in MB."""
    conn = api.connect()
    url = f"{hostile.BASE}{attack.path}"
    if attack.params:
        url += "?" + hostile.urllib.parse.urlencode(attack.params)
    headers = {"Accept-Encoding": "identity", "Authorization": f"Bearer {api.token}"}
    conn.request("GET", url, headers={**headers, **attack.headers})
    body = conn.getresponse().read()
    conn.close()
    return len(body) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=300, help="executions stored")
    parser.add_argument("--doc-kb", type=int, default=279, help="each one's size, in KB")
    parser.add_argument("--seconds", type=float, default=5.0, help="time under each attack")
    parser.add_argument("--repeat", type=int, default=3, help="times each attack is timed")
    args = parser.parse_args(argv)
    run(args.docs, args.doc_kb, args.seconds, args.repeat)


if __name__ == "__main__":
    main()
