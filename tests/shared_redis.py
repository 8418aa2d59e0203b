"""The real Redis's databases the test areas use, one each, flushed as a test module starts.

Under pytest-xdist (`make test` runs two workers) each worker takes its own four: worker `gw0`
databases 11-14, `gw1` 7-10, `gw2` 3-6, so that one worker never flushes another's. An area's
environment variable, where set, names its URL for every worker.
"""

from __future__ import annotations

import os

#: the databases the areas use below one another's (11-14 on the first worker)
AREAS = 4
WORKERS = 3


def worker_index() -> int:
    """This pytest-xdist worker's number (0 outside xdist)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(name.removeprefix("gw") or 0)
    if index >= WORKERS:
        raise RuntimeError(f"the Redis-backed tests take at most {WORKERS} xdist workers")
    return index


def shared_redis_url(variable: str, database: int) -> str:
    """`variable`'s URL if set, else `database` (11-14) of 127.0.0.1:6379 on this worker."""
    return os.environ.get(variable) or (
        f"redis://127.0.0.1:6379/{database - AREAS * worker_index()}"
    )
