"""Accepting a trigger: record the execution first, then hand its id to the workers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from procexec.engine import shown_parameters
from procexec.engine.domain import Status, Trigger
from procexec.engine.errors import BadRequest, BrokerUnavailable, NotFound, excerpt
from procexec.engine.process import ProcessRegistry
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.timeutil import iso_ms

logger = logging.getLogger(__name__)

#: hands an execution to the workers: its id, a delay in seconds, and its process's name (for
#: the operators' view of the task; None where it could not be read)
Dispatch = Callable[[str, float, str | None], None]
#: hands a run's LOAD to the loader queue: its id, the ticket the loader claims it with, and its
#: process's name
HandOff = Callable[[str, str, str | None], None]


def new_execution(
    *,
    service: str,
    name: str,
    environment: str,
    trigger: Trigger,
    reason: str,
    run_as: str,
) -> dict[str, Any]:
    """A fresh execution document, its fields in the seed page's order."""
    return {
        "_id": str(uuid.uuid4()),
        "service": service,
        "name": name,
        "environment": environment,
        "trigger": trigger.value,
        "status": Status.TRIGGERED.value,
        "message": "Triggered",
        "reason": reason,
        "start": iso_ms(),
        "runAs": run_as,
        "phases": [],
    }


class TriggerService:
    def __init__(
        self,
        store: ExecutionStore,
        registry: ProcessRegistry,
        dispatch: Dispatch,
        hand_off: HandOff | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.dispatch = dispatch
        #: sends LOAD phases to the loader queue; None: LOAD runs where the other phases ran
        self.hand_off = hand_off

    def record(
        self,
        name: str,
        *,
        run_as: str,
        environment: str,
        body: Mapping[str, Any] | None = None,
        trigger: Trigger = Trigger.MANUAL,
        reason: str | None = None,
        execution_id: str | None = None,
        chain: Sequence[str] = (),
        delay: float = 0.0,
        added: Mapping[str, Any] | None = None,
        phases: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Record a new `triggered` execution of process `name`, without dispatching it.

        `body` is validated against the process's parameters (a `BadRequest` naming each field
        refused, and nothing recorded); `added` holds the keys the service itself sets beside
        them (`subscription`, `upstream`). A given `execution_id` makes this idempotent: a
        second one with the same id raises `DuplicateExecution`. `chain` names the processes
        upstream of this run (subscriptions and followers), to cut loops. `phases` are entries
        the run begins with, finished already (a rerun's, carried over: `engine.rerun`).
        """
        process = self.registry.get(name)
        if process is None:
            raise NotFound(f"unknown process '{excerpt(name)}'")
        if body is not None and not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object of parameters")
        if reason is not None and "\x00" in reason:  # SQLite's functions would cut it there
            raise BadRequest("_reason: a NUL character (\\x00) is not allowed")
        doc = new_execution(
            service=process.service,
            name=process.name,
            environment=environment,
            trigger=trigger,
            reason=reason or f"Manually triggered by {run_as}",
            run_as=run_as,
        )
        if execution_id is not None:
            doc["_id"] = execution_id
        if phases:
            doc["phases"] = [dict(phase) for phase in phases]
        now = datetime.now(UTC)
        meta: dict[str, Any] = {
            "input": process.parameters(body, added=added),
            # optimistic: a failed dispatch clears it, for the housekeeper to send again
            "dispatched": iso_ms(now),
            "due": iso_ms(now + timedelta(seconds=delay)),
        }
        if chain:
            meta["chain"] = list(chain)
        self.store.insert(doc, meta=meta)
        # what Flower shows of the task: its parameters, secrets masked
        shown_parameters.remember(doc["_id"], process.parameters_model.secrets, meta["input"])
        return doc

    def send(self, execution_id: str, delay: float = 0.0, process: str | None = None) -> bool:
        """Hand a recorded execution to the workers; False (logged) if the broker failed.

        `process` is its process's name; read from the store when not given.
        """
        if process is None:
            process = self._process_of(execution_id)
        try:
            self.dispatch(execution_id, delay, process)
        except BrokerUnavailable as exc:  # an outage, not a bug: one line
            logger.error(
                "dispatching %s failed (%s); it stays triggered for redelivery", execution_id, exc
            )
            self._undispatched(execution_id)
            return False
        except Exception:
            logger.exception(
                "dispatching %s failed; it stays triggered for redelivery", execution_id
            )
            self._undispatched(execution_id)
            return False
        return True

    def send_all(self, runs: Sequence[tuple[str, float, str | None]]) -> list[bool]:
        """`send` each of `runs` (execution id, delay, process name) in turn; once one fails,
        the rest are not tried (the broker is down: each would wait out the retries) but left
        for the housekeeper to send again, as a failed one is. Whether each was sent."""
        sent: list[bool] = []
        for execution_id, delay, process in runs:
            if sent and not sent[-1]:
                logger.error(
                    "dispatching %s skipped; it stays triggered for redelivery", execution_id
                )
                self._undispatched(execution_id)
                sent.append(False)
            else:
                sent.append(self.send(execution_id, delay, process))
        return sent

    def send_load(self, execution_id: str, ticket: str, process: str | None = None) -> bool:
        """Hand a run's LOAD to the loader queue; False (logged) if the broker failed: the
        housekeeper sends it again once the ticket is `lost_run_timeout` old."""
        if self.hand_off is None:
            return False
        if process is None:
            process = self._process_of(execution_id)
        try:
            self.hand_off(execution_id, ticket, process)
        except BrokerUnavailable as exc:
            logger.error(
                "handing %s to the loader queue failed (%s); the housekeeper sends it again",
                execution_id,
                exc,
            )
            return False
        except Exception:
            logger.exception(
                "handing %s to the loader queue failed; the housekeeper sends it again",
                execution_id,
            )
            return False
        return True

    def _process_of(self, execution_id: str) -> str | None:
        try:
            doc = self.store.get(execution_id)
        except Exception:  # the name only labels the task: the run is sent all the same
            logger.warning("reading the process of %s failed", execution_id, exc_info=True)
            return None
        return None if doc is None else str(doc["name"])

    def _undispatched(self, execution_id: str) -> None:
        """Clear the dispatch mark, so that the next housekeeping pass sends the run again."""
        try:
            self.store.update(
                execution_id,
                Update(
                    meta={"dispatched": None},
                    expect_status=frozenset({Status.TRIGGERED.value}),
                ),
            )
        except Exception:  # the store is down too: sent again after `redispatch_after`
            logger.exception("clearing the dispatch mark of %s failed", execution_id)

    def trigger(
        self,
        name: str,
        *,
        run_as: str,
        environment: str,
        body: Mapping[str, Any] | None = None,
        trigger: Trigger = Trigger.MANUAL,
        reason: str | None = None,
        delay: float = 0.0,
        execution_id: str | None = None,
        chain: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Record a new execution of process `name` and dispatch it; returns the document.

        The document is recorded before the dispatch: once this returns, the run is accepted,
        even if the broker was unreachable (the document is the outbox).
        """
        doc = self.record(
            name,
            run_as=run_as,
            environment=environment,
            body=body,
            trigger=trigger,
            reason=reason,
            execution_id=execution_id,
            chain=chain,
            delay=delay,
        )
        self.send(doc["_id"], delay, process=doc["name"])
        return doc
