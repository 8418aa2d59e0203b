"""Runs processes here, in the calling Python process: no broker, no worker, no API.

`procexec run` (`procexec.run_cli`) and the test helper (`procexec.testing`) share it. A run is
recorded as a trigger records it (`TriggerService.record`: the process's parameters checked, a
`BadRequest` naming what is refused, a `NotFound` for an unknown process), then run in the
calling thread by the engine's `PhaseRunner`, every phase here, LOAD too.

Nothing here reads procexec's settings: the store is the caller's, or a temporary SQLite file
(`temporary_store`) removed afterwards, never the service's store that `PROCEXEC_STORE_URL` or
`PROCEXEC_DATA_DIR` name.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from procexec.engine.domain import DEFAULT_ENVIRONMENT, Trigger
from procexec.engine.process import ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService

#: the seconds between two writes of a run's log lines, here: readers see lines soon
FLUSH_INTERVAL = 0.05


@contextlib.contextmanager
def temporary_store() -> Iterator[ExecutionStore]:
    """A new SQLite store in a temporary folder, removed with the folder afterwards."""
    from procexec.engine.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="procexec-run-") as folder:
        store = SQLiteStore(Path(folder) / "procexec.db")
        try:
            yield store
        finally:
            store.close()


class LocalRunner:
    """Records and runs executions of `registry`'s processes on `store`, in this thread.

    With `follow_ups`, the runs that subscribe to or follow a finished run are recorded as a
    worker records them, and queued (`pending`) for the caller to run in turn; without, none is
    recorded.
    """

    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        *,
        follow_ups: bool = False,
        worker_id: str = "local",
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.store = store
        self.registry = registry
        #: the follow-up runs recorded and not yet run, oldest first
        self.pending: list[str] = []
        self.triggers = TriggerService(store, registry, self._queue)
        self.runner = PhaseRunner(
            store,
            registry,
            worker_id=worker_id,
            flush_interval=flush_interval,
            triggers=self.triggers if follow_ups else None,
            loads_here=True,
        )

    def _queue(self, execution_id: str, delay: float, process: str | None = None) -> None:
        self.pending.append(execution_id)

    def record(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        environment: str = DEFAULT_ENVIRONMENT,
        run_as: str = "local",
        reason: str | None = None,
        added: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record a run of process `name` with `params`, checked as a trigger's body is; its
        document. `added`: the keys the service sets on its own runs (`subscription`,
        `upstream`), which make it a `subscription` run, as the service's are."""
        return self.triggers.record(
            name,
            run_as=run_as,
            environment=environment,
            body=params,
            reason=reason,
            added=added or None,
            trigger=Trigger.SUBSCRIPTION if added else Trigger.MANUAL,
        )

    def run(self, execution_id: str) -> str | None:
        """Run a recorded execution to its end; its final status (None if it was not
        `triggered`)."""
        return self.runner.run(execution_id)

    def document(self, execution_id: str) -> dict[str, Any]:
        doc = self.store.get(execution_id)
        if doc is None:
            raise LookupError(f"execution {execution_id} is not in the store")
        return doc
