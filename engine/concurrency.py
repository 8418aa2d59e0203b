"""Concurrency limits: how many runs may run at once, across every worker and host.

A process may declare `max_running` (with `limit_key`, per value of one of its parameters: one
run per `date`); an operator may set or clear it (`procexec process limit NAME N|none`, kept
in the store beside the schedules); `PROCEXEC_MAX_RUNNING` holds over every process and
environment. Each limit is a scope whose slots the store keeps (`engine.store.slots`):

- a run takes a slot of each scope that limits it when it is claimed, all or none; one that
  finds a scope full (or an earlier run waiting for it) is not claimed but parked: it stays
  `triggered`, says what it waits for in its message, and is never sent again as undelivered;
- a run that ends gives its slots back, and the run that has waited longest for each scope is
  sent again (`wake`); a run whose worker died keeps its slot while it is resumed, and gives it
  back once the lost-run machinery fails it;
- the housekeeping gives back the slots of runs that ended without doing so (a killed worker,
  a cancelled or deleted run), and sends waiting runs where a slot is free or the limit was
  raised or cleared (`housekeep`).

A run that no limit concerns costs the store nothing more: the limits of the processes are in
memory, the operators' read at most every `STATE_TTL` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from procexec.engine import audit
from procexec.engine.domain import TERMINAL, Status
from procexec.engine.errors import BadRequest, NotFound, excerpt
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.store.base import ExecutionStore, ProcessState, Update
from procexec.engine.store.slots import PARKED
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService

logger = logging.getLogger(__name__)

#: the scope of `PROCEXEC_MAX_RUNNING`, over every process and environment
EVERY_RUN = "*"
#: seconds a runner keeps the operators' limits before it reads them again
STATE_TTL = 5.0
#: the most waiting runs one housekeeping pass sends for one scope
WAKE_BATCH = 100


def effective_limit(process: Process, state: ProcessState | None) -> int | None:
    """A process's limit: the operator's (0: none) over its definition's."""
    if state is not None and state.max_running is not None:
        return state.max_running or None
    return process.max_running


@dataclass(frozen=True)
class Scope:
    """One limit a run is under: the store's key of it, its limit, and how to say it."""

    key: str
    limit: int
    label: str

    def waiting(self, held: int) -> str:
        """The message of a run waiting for one of its slots."""
        return f"Waiting for a slot: {self.label.format(held=held)}"


class Limits:
    """The concurrency limits of a store's runs, as a runner or the housekeeping applies them."""

    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        triggers: TriggerService | None = None,
        *,
        max_running: int = 0,
        state_ttl: float = STATE_TTL,
    ) -> None:
        self.store = store
        self.registry = registry
        #: sends the runs woken; None: left to the housekeeping
        self.triggers = triggers
        #: the limit over every run (`PROCEXEC_MAX_RUNNING`); 0: none
        self.max_running = max_running
        self.state_ttl = state_ttl
        self._overrides: Mapping[str, int | None] = {}
        self._read_at = -float("inf")

    def _override(self, name: str) -> int | None:
        """The operator's limit of process `name` (0: none; None: the definition's)."""
        if time.monotonic() - self._read_at >= self.state_ttl:
            states = self.store.process_states()
            self._overrides = {key: state.max_running for key, state in states.items()}
            self._read_at = time.monotonic()
        return self._overrides.get(name)

    def limit_of(self, process: Process) -> int | None:
        override = self._override(process.name)
        if override is not None:
            return override or None
        return process.max_running

    def limited(self, process: Process | None) -> bool:
        """Whether any limit concerns the runs of `process` (none where it is unknown)."""
        return process is not None and (self.max_running > 0 or self.limit_of(process) is not None)

    def scopes(self, execution_id: str, process: Process) -> list[Scope]:
        found = []
        limit = self.limit_of(process)
        if limit is not None:
            name, key = process.name, process.limit_key
            if key is None:
                found.append(
                    Scope(name, limit, f"{name} has {{held}} running (max_running {limit})")
                )
            else:
                value = (self.store.get_meta(execution_id).get("input") or {}).get(key)
                text = json.dumps(value, sort_keys=True, separators=(",", ":"))
                # a secret's value keys the slots (in the store, as the value itself) alone
                shown = '"**********"' if key in process.parameters_model.secrets else text
                label = f"{name} has {{held}} running for {key}={shown} (max_running {limit})"
                found.append(Scope(f"{name}/{key}={text}", limit, label))
        if self.max_running > 0:
            label = f"{{held}} runs running in all (PROCEXEC_MAX_RUNNING {self.max_running})"
            found.append(Scope(EVERY_RUN, self.max_running, label))
        return found

    def admit(self, doc: Mapping[str, Any], process: Process, seq: int) -> bool:
        """Take the run's slots before its claim; False where one of its scopes is full: the
        run is parked (unless it changed since it was read at `seq`) and not to be claimed."""
        execution_id = str(doc["_id"])
        scopes = self.scopes(execution_id, process)
        wanted = [(scope.key, scope.limit) for scope in scopes]
        full = self.store.take_slots(execution_id, wanted, str(doc["start"]), iso_ms())
        if full is None:
            return True
        key, held = full
        scope = next(scope for scope in scopes if scope.key == key)
        parked = self.store.update(
            execution_id,
            Update(
                set={"message": scope.waiting(held)},
                meta={"waiting": key, "dispatched": PARKED},
                expect_status=frozenset({Status.TRIGGERED.value}),
                expect_seq=seq,
            ),
        )
        if parked:
            logger.info("execution %s: %s", execution_id, scope.waiting(held))
            self.wake(key)  # a slot given back while this run was being parked
        return False

    def release(self, execution_id: str) -> None:
        """Give back the slots of a run that has ended, and send the runs waiting for them."""
        for key in self.store.release_slots(execution_id):
            self.wake(key)

    def _limit_of_scope(self, key: str) -> int | None:
        if key == EVERY_RUN:
            return self.max_running or None
        process = self.registry.get(key.split("/", 1)[0])
        return None if process is None else self.limit_of(process)

    def wake(self, key: str) -> str | None:
        """Send the run that has waited longest for `key` where one of its slots is free; its
        id, or None."""
        if self.triggers is None:
            return None  # the housekeeping sends it
        limit = self._limit_of_scope(key)
        if limit is not None and self.store.slots_held(key) >= limit:
            return None
        execution_id = self.store.unpark(key, iso_ms())
        if execution_id is not None:
            self.triggers.send(execution_id)
        return execution_id

    def housekeep(self) -> list[str]:
        """Give back the slots of runs that have ended (or are gone), then send waiting runs
        where their scope has free slots or no limit any more; the runs sent."""
        statuses: dict[str, str | None] = {}
        for _key, holder in self.store.slot_holders():
            if holder not in statuses:
                statuses[holder] = self.store.holder(holder)[0]
                if statuses[holder] is None or statuses[holder] in TERMINAL:
                    logger.info("execution %s has ended: its slots are given back", holder)
                    self.store.release_slots(holder)
        woken: list[str] = []
        if self.triggers is None:
            return woken
        for key, waiting in self.store.waiting_scopes().items():
            limit = self._limit_of_scope(key)
            free = waiting if limit is None else limit - self.store.slots_held(key)
            for _ in range(max(0, min(free, waiting, WAKE_BATCH))):
                execution_id = self.store.unpark(key, iso_ms())
                if execution_id is None:
                    break
                self.triggers.send(execution_id)
                woken.append(execution_id)
        return woken


def change_limit(
    store: ExecutionStore, registry: ProcessRegistry, name: str, limit: int | None, *, who: str
) -> int | None:
    """The operator's limit of process `name`: N (1 or more) runs at once, 0 none, or None:
    back to its definition's. Returns the limit that now holds (None: no limit). The runs
    waiting for a slot start as the housekeeping finds room for them."""
    process = registry.get(name)
    if process is None:
        raise NotFound(f"unknown process '{excerpt(name)}'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadRequest("limit: a whole number of runs, 1 or more, or none")
    state = store.set_process_state(name, max_running=limit)
    audit.record(store, who, "limit", name, limit="default" if limit is None else limit or None)
    return effective_limit(process, state)
