"""The SQLite store's tables beside the executions: tokens, series, checkpoints, retention and
the processes' state, each a module of this package; `SQLiteStore` takes them from here."""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from procexec.engine.store.base import Action, Observation, ProcessState, TokenRecord
from procexec.engine.store.sqlite import audit, processes, retention, runs, series, tokens
from procexec.engine.store.sqlite.writers import transaction


class SideTables:
    """Methods of `ExecutionStore` over the side tables, on the store's connection."""

    #: the store's write gate (`writers.gate`)
    _writing: threading.RLock

    def _connect(self) -> sqlite3.Connection:
        raise NotImplementedError

    def add_token(self, record: TokenRecord) -> None:
        tokens.add_token(self._connect(), record)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        return tokens.find_token(self._connect(), token_hash)

    def token_records(self) -> builtins.list[TokenRecord]:
        return tokens.token_records(self._connect())

    def revoke_token(self, token_hash: str, when: str) -> bool:
        return tokens.revoke_token(self._connect(), token_hash, when)

    def upsert_observations(self, environment: str, rows: Sequence[Observation]) -> int:
        conn = self._connect()
        with transaction(conn, self._writing):
            return series.upsert_observations(conn, environment, rows)

    def get_series(self, environment: str, series_id: str) -> dict[str, float]:
        return series.get_series(self._connect(), environment, series_id)

    def save_checkpoint(self, execution_id: str, phase: int, blob: bytes) -> None:
        runs.keep(self._connect(), execution_id, phase, blob)

    def load_checkpoint(
        self, execution_id: str, phase: int | None = None
    ) -> tuple[int, bytes] | None:
        return runs.load_checkpoint(self._connect(), execution_id, phase)

    def purge(self, before: str, limit: int = 100) -> int:
        return retention.purge(self._connect(), before, limit)

    def process_states(self) -> dict[str, ProcessState]:
        return processes.process_states(self._connect())

    def set_process_state(self, name: str, **overrides: Any) -> ProcessState:
        return processes.set_process_state(self._connect(), name, **overrides)

    def advance_schedule(self, name: str, last_fire: str, missed: int = 0) -> bool:
        return processes.advance_schedule(self._connect(), name, last_fire, missed)

    def record_action(self, action: Action) -> None:
        audit.record_action(self._connect(), action)

    def actions(
        self,
        *,
        since: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Action]:
        return audit.actions(
            self._connect(), since=since, action=action, target=target, limit=limit
        )
