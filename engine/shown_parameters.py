"""A run's parameters as a reader may see them: the parameters it was triggered with (the
store's hidden `input`, `ExecutionStore.get_meta`), secrets masked by the process's own model
(`Parameters.shown`); a run of a process this service no longer knows shows none of its values.

Asked for by `_params=true` on a call that reads one execution (`v1/{id}`, `v1/private/{id}`):
the document as always, with `parameters` beside its fields. The default document, and the
list call, are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from procexec.engine.errors import BadRequest, excerpt
from procexec.engine.process import ProcessRegistry
from procexec.engine.store.base import ExecutionStore

#: the option of a one-execution read that asks for the parameters
OPTION = "_params"
#: the field of the answer that holds them
FIELD = "parameters"
#: what a value shows when it may not be shown
MASK = "**********"
_VALUES = {"true": True, "false": False}


def asked(params: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """The parameters other than `_params`, and whether `_params=true` asked for the run's
    parameters (`true` or `false`; anything else is a 400)."""
    rest: list[tuple[str, str]] = []
    wanted = False
    for name, raw in params:
        if name != OPTION:
            rest.append((name, raw))
            continue
        value = _VALUES.get(raw)
        if value is None:
            raise BadRequest(f"{OPTION}: '{excerpt(raw)}' is not true or false")
        wanted = value
    return rest, wanted


def masked(registry: ProcessRegistry, name: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """`recorded`, the parameters of a run of process `name`, as they may be shown."""
    process = registry.get(name)
    if process is None:
        return {key: MASK for key in recorded}
    return process.parameters_model.shown(recorded)


def shown_parameters(
    store: ExecutionStore, registry: ProcessRegistry, doc: Mapping[str, Any]
) -> dict[str, Any]:
    """The parameters the run of `doc` was triggered with, as they may be shown (`{}` when none
    were recorded)."""
    recorded = store.get_meta(str(doc["_id"])).get("input") or {}
    if not isinstance(recorded, Mapping):
        return {}
    return masked(registry, str(doc.get("name")), recorded)
