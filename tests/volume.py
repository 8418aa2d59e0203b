"""A real SQLite store of many executions, for tests that need a read to be slow honestly (by
the volume it reads, not by a trick)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from procexec.engine.store.sqlite import SQLiteStore, schema
from tests.documents import execution

#: executions enough for a read of them all to take tens of milliseconds (about 10 µs each
#: for a general `_aggregate` on a 2-core VM), few enough to be written in about a second
EXECUTIONS = 8000

#: reads that go through every execution, for each of the calls the API runs in a thread
SLOW_AGGREGATE = (
    '[{"$group":{"_id":{"name":"$name","trigger":"$trigger","runAs":"$runAs"},'
    '"n":{"$sum":1},"last":{"$max":"$message"},"first":{"$min":"$start"}}}]'
)
SLOW_FIELDINFO = "phases.status"
#: a regular expression over every log line of every execution, matching none
SLOW_FILTER = ("phases.log", "regex(never logged)")


def document(number: int) -> dict[str, Any]:
    """A finished four-phase execution, as a worker writes it, with words of its own (its
    reason, its caller and every log line name its number)."""
    status = "failed" if number % 10 == 0 else "success"
    doc = execution(
        f"v{number:06d}",
        f"2021-07-{1 + number % 28:02d}T16:30:{number % 60:02d}.{number % 1000:03d}Z",
        name=("ECB_FX", "ECB_FX_CROSS", "DEMO")[number % 3],
        status=status,
        trigger=("scheduled", "manual")[number % 2],
    )
    doc.update(reason=f"run {number}", runAs=f"user{number % 7}")
    for phase in doc["phases"]:
        phase["log"] = [f"{line} of run {number}" for line in phase["log"]]
    return doc


def write_store(path: Path, count: int = EXECUTIONS) -> Path:
    """A store file at `path` holding `count` executions, written in one transaction (the
    store's triggers keep its full-text index; its counters are made from the rows after)."""
    store = SQLiteStore(path)
    try:
        conn = store._connect()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO executions (id, doc) VALUES (?, ?)",
            ((doc["_id"], json.dumps(doc)) for doc in map(document, range(count))),
        )
        conn.execute("COMMIT")
        # counted from the rows, as a store of an earlier version is when it opens (the store
        # counts its own inserts; these went around it)
        for table in ("execution_totals", "execution_counts", "execution_days", "execution_months"):
            conn.execute(f"DROP TABLE {table}")
        schema.ensure_list_schema(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file, to be copied
    finally:
        store.close()
    return path
