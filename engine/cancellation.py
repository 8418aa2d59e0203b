"""Cancelling an execution: it fails at once, says who cancelled it, and its worker stops."""

from __future__ import annotations

from collections.abc import Callable

from procexec.engine import audit
from procexec.engine.domain import ACTIVE, TERMINAL, Status
from procexec.engine.errors import Conflict, NotFound, excerpt
from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.timeutil import iso_ms

#: statuses from which an execution can be cancelled
CANCELLABLE = frozenset({Status.TRIGGERED.value, *ACTIVE})

#: stops the task of an execution on the workers (Celery's revoke), if there is one
Revoke = Callable[[str], None]


def cancel_execution(
    store: ExecutionStore,
    execution_id: str,
    *,
    user: str,
    environment: str | None = None,
    revoke: Revoke | None = None,
) -> dict[str, object]:
    """Fail a triggered or running execution as cancelled by `user`; returns the document.

    Clearing the worker's claim fences the worker off: its next write, heartbeat or check
    finds the run taken away and stops.
    """
    for _ in range(3):
        doc = store.get(execution_id, environment)
        if doc is None:
            raise NotFound(f"no execution '{excerpt(execution_id)}'")
        if doc["status"] in TERMINAL:
            raise Conflict(
                f"execution '{execution_id}' has already finished ({doc['status']}): "
                "nothing to cancel"
            )
        message = f"Cancelled by {user}"
        cancelled = store.update(
            execution_id,
            Update(
                set={"status": Status.FAILED.value, "message": message, "end": iso_ms()},
                fail_running_phases=message,
                expect_status=CANCELLABLE,
                meta={"worker": None},
            ),
        )
        if cancelled:
            audit.record(store, user, "cancel", execution_id, was=doc["status"])
            if revoke is not None:
                revoke(execution_id)
            final = store.get(execution_id)
            assert final is not None
            return final
    raise Conflict(f"execution '{execution_id}' kept changing; try again")
