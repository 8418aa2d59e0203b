"""Writes a running execution into its document: phases and status at once, log lines batched.

Log lines are buffered and flushed by a background thread every `flush_interval` seconds, and
before every status change, so readers see them in order and while the run goes on, without
one store write per line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from engine.constants import PhaseStatus, Status
from engine.store.base import ExecutionStore, Update
from engine.timeutil import iso_ms

logger = logging.getLogger(__name__)

#: the statuses in which a worker may still write a run
_WRITABLE = frozenset({Status.RUNNING, Status.WAITING, Status.RETRYING})


class ExecutionRecorder:
    def __init__(
        self,
        store: ExecutionStore,
        execution_id: str,
        *,
        flush_interval: float,
        phase_count: int = 0,
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.flush_interval = flush_interval
        self.phase_count = phase_count
        self._pending: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ExecutionRecorder:
        self._thread = threading.Thread(
            target=self._flush_loop, name=f"flush-{self.execution_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _flush_loop(self) -> None:
        try:
            while not self._stop.wait(self.flush_interval):
                try:
                    self.flush()
                except Exception:  # the next flush tries again; the lines are kept
                    logger.exception("flushing the log of %s failed", self.execution_id)
        finally:
            self.store.release_thread()

    def log(self, phase_index: int, line: str) -> None:
        with self._lock:
            self._pending.setdefault(phase_index, []).append(line)

    def _take_pending(self) -> dict[str, list[str]]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return {f"phases.{index}.log": lines for index, lines in pending.items() if lines}

    def _restore(self, pushed: Mapping[str, list[str]]) -> None:
        with self._lock:
            for path, lines in pushed.items():
                index = int(path.split(".")[1])
                self._pending[index] = lines + self._pending.get(index, [])

    def _write(self, *, set: Mapping[str, Any] | None = None, with_logs: bool = True) -> bool:
        with self._write_lock:
            push = self._take_pending() if with_logs else {}
            if not push and not set:
                return True
            change = Update(set=set, push=push, expect_status=_WRITABLE)
            try:
                return self.store.update(self.execution_id, change)
            except Exception:
                self._restore(push)
                raise

    def flush(self) -> bool:
        """Write the buffered log lines now."""
        return self._write()

    def set(self, **fields: Any) -> bool:
        """Set top-level fields, after the buffered log lines."""
        return self._write(set=fields)

    def start_phase(self, name: str, message: str) -> int:
        """Append a new `running` phase; returns its index."""
        self.flush()
        index = self.phase_count
        phase = {
            "name": name,
            "start": iso_ms(),
            "status": PhaseStatus.RUNNING.value,
            "message": message,
            "log": [],
        }
        with self._write_lock:
            self.store.update(
                self.execution_id,
                Update(
                    set={"message": message},
                    push={"phases": [phase]},
                    expect_status=_WRITABLE,
                ),
            )
        self.phase_count += 1
        return index

    def set_phase(self, index: int, **fields: Any) -> bool:
        return self._write(set={f"phases.{index}.{key}": value for key, value in fields.items()})

    def end_phase(self, index: int, status: PhaseStatus, message: str) -> bool:
        return self.set_phase(index, status=status.value, message=message, end=iso_ms())
