"""Rerunning an execution from its failed phase: a new execution of the same process,
environment and parameters, whose phases before that one are carried over from the old run
(their entries as it wrote them, and its checkpoints), so that it runs from that phase on.

The new run starts as a run resumed after its worker was lost does (`checkpoints.resume_point`):
its document already holds the carried phases, `success` each, and the store its checkpoints
of them, copied before the document is recorded; the runner begins at the first phase after
them. The old run is not changed: the audit trail (`rerun`, on the old run's id) names its
reruns, and each rerun's reason names the run it repeats.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from procexec.engine import audit
from procexec.engine.domain import TERMINAL, PhaseStatus, Status, Trigger
from procexec.engine.errors import BadRequest, Conflict, NotFound, excerpt
from procexec.engine.params import RESERVED
from procexec.engine.process import Process
from procexec.engine.query import parse_query
from procexec.engine.store.base import ExecutionStore
from procexec.engine.timeutil import log_line
from procexec.engine.trigger_service import TriggerService

#: `from=start`: the rerun runs every phase again
START = "start"


def reason(execution_id: str, phase: str) -> str:
    """The rerun's reason: the run it repeats and the phase it starts from."""
    return f"Rerun of {execution_id} from {phase}"


def carried_line(execution_id: str) -> str:
    """The line a carried-over phase's log gains in the rerun."""
    return log_line("info", f"Carried over from {execution_id}: not run again")


def rerun_execution(
    store: ExecutionStore,
    triggers: TriggerService,
    execution_id: str,
    *,
    user: str,
    environment: str | None = None,
    start_from: str | None = None,
    send: bool = True,
) -> dict[str, Any]:
    """Record a rerun of a finished execution by `user`, then (`send`) dispatch it; returns
    the new document, `triggered`.

    It starts from the old run's failed phase, or from `start_from`: `start` (every phase) or
    a phase's name. A 404 for an unknown execution (outside `environment`, when given); a 409
    for one still active, one with no failed phase (and no `start_from`), one whose checkpoint
    before the phase it starts from is gone or that stopped before it; a 400 for a phase its
    process does not have, or parameters the process refuses now.
    """
    new, _ = _record(store, triggers, execution_id, user, environment, start_from)
    if send:
        triggers.send(str(new["_id"]), process=str(new["name"]))
    return new


def _record(
    store: ExecutionStore,
    triggers: TriggerService,
    execution_id: str,
    user: str,
    environment: str | None,
    start_from: str | None,
) -> tuple[dict[str, Any], str]:
    """`rerun_execution` but for the dispatch: the new document, and the phase it starts at."""
    doc = store.get(execution_id, environment)
    if doc is None:
        raise NotFound(f"no execution '{excerpt(execution_id)}'")
    if doc["status"] not in TERMINAL:
        raise Conflict(
            f"execution '{execution_id}' is still {doc['status']}: cancel it, or wait for it "
            "to end, before rerunning it"
        )
    process = triggers.registry.get(str(doc["name"]))
    if process is None:
        raise Conflict(f"execution '{execution_id}': this service has no process '{doc['name']}'")
    first = first_phase(doc, process, start_from)
    carried = carried_phases(doc, process, first)
    checkpoints = copied_checkpoints(store, doc, process, first)
    meta = store.get_meta(execution_id)
    own, added = split_parameters(meta.get("input") or {})
    try:
        process.parameters(own, added=added)
    except BadRequest as exc:
        raise BadRequest(
            f"the parameters of '{execution_id}' no longer hold for {process.name}: {exc}"
        ) from None
    new_id = str(uuid.uuid4())
    phase = process.phases[first].name
    # the checkpoints first: a document recorded without them would run the carried phases
    for index, blob in checkpoints:
        store.save_checkpoint(new_id, index, blob)
    new = triggers.record(
        process.name,
        run_as=user,
        environment=str(doc["environment"]),
        body=own,
        added=added,
        trigger=Trigger.MANUAL,
        reason=reason(execution_id, phase),
        execution_id=new_id,
        chain=meta.get("chain") or (),
        phases=carried,
    )
    audit.record(store, user, "rerun", execution_id, rerun=new_id, from_phase=phase)
    return new, phase


def first_phase(doc: Mapping[str, Any], process: Process, start_from: str | None) -> int:
    """The index of the phase a rerun of `doc` starts from (`rerun_execution`)."""
    names = [phase.name for phase in process.phases]
    old = doc.get("phases") or []
    stopped = next(
        (i for i, phase in enumerate(old) if phase.get("status") != PhaseStatus.SUCCESS.value),
        len(old),
    )
    if start_from is None:
        if doc["status"] != Status.FAILED.value or stopped >= len(names):
            raise Conflict(
                f"execution '{doc['_id']}' ended {doc['status']} with no failed phase: "
                f"from={START} runs it all again, from=PHASE from that phase"
            )
        return stopped
    if start_from.strip().lower() == START:
        return 0
    name = start_from.strip().upper()
    if name not in names:
        raise BadRequest(
            f"from: '{excerpt(start_from)}' is not a phase of {process.name}; it takes "
            f"{START}, {', '.join(names)}"
        )
    first = names.index(name)
    if first > stopped:
        raise Conflict(
            f"from: {name} comes after {names[stopped]}, which did not finish in "
            f"'{doc['_id']}': a rerun starts at a phase whose phases before it all finished"
        )
    return first


def carried_phases(doc: Mapping[str, Any], process: Process, first: int) -> list[dict[str, Any]]:
    """The old run's entries of the phases before `first`, as it wrote them, each with one
    line more saying it was carried over; a 409 where the process's phases changed since."""
    old = doc.get("phases") or []
    carried = []
    for index in range(first):
        entry, name = old[index], process.phases[index].name
        if entry.get("name") != name:
            raise Conflict(
                f"execution '{doc['_id']}' ran {entry.get('name')} where {process.name} now has "
                f"{name}: its phases changed since; from={START} runs it all again"
            )
        carried.append({**entry, "log": [*(entry.get("log") or []), carried_line(doc["_id"])]})
    return carried


def copied_checkpoints(
    store: ExecutionStore, doc: Mapping[str, Any], process: Process, first: int
) -> Sequence[tuple[int, bytes]]:
    """The old run's checkpoints of the phases before `first`: the one before it required (a
    409 when it is gone), the others copied where they are kept."""
    found = []
    for index in range(first):
        checkpoint = store.load_checkpoint(str(doc["_id"]), index)
        if checkpoint is not None and checkpoint[0] == index:
            found.append(checkpoint)
        elif index == first - 1:
            raise Conflict(
                f"execution '{doc['_id']}': the checkpoint of {process.phases[index].name} is "
                "gone (deleted with the run's retention, or its result could not be kept), so "
                f"{process.phases[first].name} has nothing to start from; from={START} runs "
                "it all again"
            )
    return found


def split_parameters(recorded: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recorded parameters as the process's own and the service's keys (`params.RESERVED`)."""
    own = {key: value for key, value in recorded.items() if key not in RESERVED}
    added = {key: value for key, value in recorded.items() if key in RESERVED}
    return own, added


#: the most runs one `rerun_failed` call reruns, whatever it is asked
MAX_BATCH = 100
#: the rows one read of the candidates takes
_PAGE = 100


@dataclass
class Batch:
    """What `rerun_failed` did: each rerun made (old id, new id, phase), each run refused and
    why, how many were skipped as rerun already, and whether more remain past `limit`."""

    made: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    more: bool = False


def rerun_failed(
    store: ExecutionStore,
    triggers: TriggerService,
    *,
    user: str,
    since: str,
    until: str,
    environment: str,
    process: str | None = None,
    start_from: str | None = None,
    limit: int = 20,
) -> Batch:
    """Rerun the failed runs of `environment` (of `process`, when given) that started in
    [`since`, `until`), oldest first, at most `limit` of them (at most `MAX_BATCH`).

    A run that has a rerun already (the audit trail says so) is skipped, so that the same call
    made again goes on where the last one stopped; a run refused (its checkpoint gone, its
    parameters refused now) is reported and passed over. The reruns are all recorded first,
    then dispatched (`TriggerService.send_all`): a broker that fails leaves them to the
    housekeeping, as any trigger."""
    if process is not None and triggers.registry.get(process) is None:
        raise NotFound(f"unknown process '{excerpt(process)}'")
    limit = max(1, min(limit, MAX_BATCH))
    selector: dict[str, Any] = {
        "status": Status.FAILED.value,
        "start": {"$gte": since, "$lt": until},
    }
    if process is not None:
        selector["name"] = process
    batch, skip = Batch(), 0
    sends: list[tuple[str, float, str | None]] = []
    while True:
        params = [
            ("_filter", json.dumps(selector)),
            ("_sort", "start"),
            ("_project", "_id"),
            ("_limit", str(_PAGE)),
            ("_skip", str(skip)),
        ]
        rows, _ = store.list(parse_query(params, environment))
        skip += len(rows)
        for row in rows:
            if len(batch.made) == limit:
                batch.more = True
                break
            old_id = str(row["_id"])
            if store.actions(action="rerun", target=old_id, limit=1):
                batch.skipped += 1
                continue
            try:
                new, phase = _record(store, triggers, old_id, user, environment, start_from)
            except (BadRequest, Conflict, NotFound) as exc:
                batch.refused.append((old_id, str(exc)))
                continue
            batch.made.append((old_id, str(new["_id"]), phase))
            sends.append((str(new["_id"]), 0.0, str(new["name"])))
        if batch.more or len(rows) < _PAGE:
            break
    triggers.send_all(sends)
    return batch
