"""The reader of `bench/logs.py`, in a process of its own: polls execution documents every 5 ms
(`store.get`) until every run has ended and, for each log line it sees for the first time,
takes now minus the line's stamp. Prints `ready` once its connection is open, then the lags
(milliseconds) as JSON.

    python bench/log_reader.py STORE_FILE ID[,ID…]
"""

from __future__ import annotations

import calendar
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procexec.engine.store.sqlite import SQLiteStore  # noqa: E402

TERMINAL = {"success", "warning", "failed"}
INTERVAL = 0.005


def stamp_ns(line: str, seconds: dict[str, int]) -> int:
    """The nanoseconds of a line's stamp, `2021-07-01T16:30:13.390935800Z[UTC] …`."""
    head = line[:19]
    second = seconds.get(head)
    if second is None:
        second = seconds[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return second * 1_000_000_000 + int(line[20:29])


def reader(db: str, ids: list[str], interval: float) -> None:
    """Poll the documents until every run ended; print the lags (ms) of the lines seen."""
    store = SQLiteStore(db, prepare=False)
    seen: set[str] = set()
    seconds: dict[str, int] = {}
    lags: list[float] = []
    polls = 0
    store.get(ids[0])  # its connection open before the runs start
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        ended = 0
        for execution_id in ids:
            doc = store.get(execution_id) or {}
            now = time.time_ns()
            for phase in doc.get("phases") or []:
                for line in phase.get("log") or []:
                    if line not in seen:
                        seen.add(line)
                        lags.append((now - stamp_ns(line, seconds)) / 1e6)
            ended += doc.get("status") in TERMINAL
        polls += 1
        if ended == len(ids):
            break
        time.sleep(interval)
    json.dump({"lags": lags, "polls": polls}, sys.stdout)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        reader(sys.argv[1], sys.argv[2].split(","), INTERVAL)
