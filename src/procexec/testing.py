"""Runs a process in a test, as a worker would, and hands back its finished document.

```python
from procexec import testing
from hello import HELLO

def test_hello():
    run = testing.run(HELLO, {"who": "tests"})
    assert run.status == "success"
    assert run.log("EXTRACT") == ["info hello, tests", "info Completed EXTRACT"]
```

`run` needs no broker, no server, no settings and no fixture: it records the run as a trigger
would (the parameters checked: a bad one raises `BadRequest`, an unknown process `NotFound`),
then runs every phase, LOAD included, in the calling thread, on a temporary SQLite store removed
afterwards (or on the `store` given, which is kept). It ignores every `PROCEXEC_*` variable:
whatever they say, it writes into no service's store.

`params` may be a mapping or an instance of the process's parameters model; a subscribed
process is given its fulfilled subscription with `subscription=` (`ctx.subscription`), a
follower the run before it with `upstream=` (`ctx.upstream`).

The runs that subscribe to or follow the finished run are not triggered unless asked
(`follow_ups=True`): then each is run in turn after it, and found in `Finished.follow_ups`.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from procexec.engine.checkpoints import Carried
from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.errors import BadRequest, NotFound
from procexec.engine.params import revealed
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.store.base import ExecutionStore
from procexec.local import LocalRunner, temporary_store

__all__ = ["BadRequest", "Finished", "NotFound", "run", "temporary_store"]

#: the most follow-up runs one `run(..., follow_ups=True)` runs (a guard against a loop)
MAX_FOLLOW_UPS = 100

#: a log line's stamp, as the engine writes it (`engine.timeutil.log_line`)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z\[UTC\] ")


class Finished(dict[str, Any]):
    """A finished run: its execution document (this dict, as the API serves it), with what a
    test asks of it.

    - `status`, `message`: the run's outcome (`success`, `warning`, `failed` …) and message;
    - `phase(name)`: a phase's entry; `log(name)`: its log lines without their timestamps
      (`"info hello, world"`);
    - `results`: what each finished phase returned, by phase name (a result that could not be
      pickled, or over 4 MB, is missing);
    - `series`: the values the run loaded (`ctx.load_series`), by series id then date;
    - `follow_ups`: the runs it triggered, finished, when run with `follow_ups=True`.
    """

    def __init__(
        self,
        document: Mapping[str, Any],
        *,
        results: Mapping[str, Any] | None = None,
        series: Mapping[str, dict[str, float]] | None = None,
        follow_ups: Iterable[Finished] = (),
    ) -> None:
        super().__init__(document)
        self.results: dict[str, Any] = dict(results or {})
        self.series: dict[str, dict[str, float]] = dict(series or {})
        self.follow_ups: list[Finished] = list(follow_ups)

    @property
    def document(self) -> dict[str, Any]:
        """The execution document, as a plain dict."""
        return dict(self)

    @property
    def status(self) -> str:
        return str(self["status"])

    @property
    def message(self) -> str:
        return str(self.get("message", ""))

    def phase(self, name: str) -> dict[str, Any]:
        """The entry of phase `name` (`KeyError` naming the phases that ran if it did not)."""
        for entry in self.get("phases") or []:
            if entry.get("name") == name.upper():
                return dict(entry)
        ran = [entry.get("name") for entry in self.get("phases") or []]
        raise KeyError(f"no phase {name!r} in this run (it ran {ran})")

    def log(self, name: str) -> list[str]:
        """Phase `name`'s log lines, each without its timestamp: `"info hello, world"`."""
        return [_STAMP.sub("", line) for line in self.phase(name).get("log") or []]


def run(
    process: Process | str,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    environment: str = DEFAULT_ENVIRONMENT,
    registry: ProcessRegistry | Iterable[Process] | None = None,
    store: ExecutionStore | None = None,
    follow_ups: bool = False,
    run_as: str = "test",
    subscription: Mapping[str, Any] | None = None,
    upstream: Mapping[str, Any] | None = None,
) -> Finished:
    """Run `process` (a `Process`, or the name of one in `registry`) with `params` (they
    override its defaults, as a trigger's body does) to its end; its finished document.

    `params`: a mapping, as a trigger's body, or an instance of the process's parameters
    model (its secrets given in clear, as a body gives them). `subscription`, `upstream`: the
    keys the service sets on the runs it makes (`ctx.subscription`, `ctx.upstream`); either
    makes it a `subscription` run, as the service's are.
    `registry`: the other processes it may name or trigger (a `ProcessRegistry` or the
    processes themselves). `store`: where to run it (kept, with what the run wrote, for the
    caller to read or run more on); by default a temporary SQLite store, removed afterwards.
    Raises `BadRequest` for parameters the process refuses and `NotFound` for an unknown
    process, before anything runs.
    """
    processes = _registry(process, registry)
    name = process.name if isinstance(process, Process) else process
    body = revealed(params) if isinstance(params, BaseModel) else params
    added = {
        key: dict(value)
        for key, value in (("subscription", subscription), ("upstream", upstream))
        if value is not None
    }
    with contextlib.ExitStack() as stack:
        where = store if store is not None else stack.enter_context(temporary_store())
        local = LocalRunner(where, processes, follow_ups=follow_ups, worker_id="test")
        doc = local.record(name, body, environment=environment, run_as=run_as, added=added)
        return _run(local, doc["_id"], follow_ups)


def _registry(
    process: Process | str, given: ProcessRegistry | Iterable[Process] | None
) -> ProcessRegistry:
    """The processes a run may use: those `given`, and `process` itself if it is one."""
    registry = ProcessRegistry(given or ())
    if isinstance(process, Process):
        registry.add(process)  # a ValueError if another process has its name
    return registry


def _run(local: LocalRunner, execution_id: str, follow_ups: bool) -> Finished:
    local.run(execution_id)
    first = _finished(local.store, local.document(execution_id))
    if not follow_ups:
        return first
    ran: list[Finished] = []
    while local.pending:
        if len(ran) >= MAX_FOLLOW_UPS:
            raise RuntimeError(f"more than {MAX_FOLLOW_UPS} follow-up runs: a loop?")
        follower = local.pending.pop(0)
        local.run(follower)
        ran.append(_finished(local.store, local.document(follower)))
    first.follow_ups = ran
    return first


def _finished(store: ExecutionStore, doc: dict[str, Any]) -> Finished:
    """`doc` with the results its phases kept and the series it loaded, read from `store`."""
    results: dict[str, Any] = {}
    for index, phase in enumerate(doc.get("phases") or []):
        if phase.get("status") != "success":
            continue
        kept = store.load_checkpoint(doc["_id"], index)
        if kept is not None and kept[0] == index:
            carried = pickle.loads(kept[1])
            results[phase["name"]] = carried.result if isinstance(carried, Carried) else carried
    loaded = {
        series_id
        for ids in ((doc.get("data") or {}).get("series") or {}).values()
        for series_id in ids
    }
    series = {series_id: store.get_series(doc["environment"], series_id) for series_id in loaded}
    return Finished(doc, results=results, series=dict(sorted(series.items())))
