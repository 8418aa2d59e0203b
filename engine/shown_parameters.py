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


# --- the task's shown arguments (Flower, Celery's events) ------------------------------------

#: the most characters of one value shown, and of the whole parameters' text
VALUE_CHARS = 40
SHOWN_CHARS = 300
#: the most runs whose shown parameters wait for their dispatch (past it, the memory starts
#: again: a run dispatched later is shown without them)
MAX_WAITING = 4096

_waiting: dict[str, str] = {}


def brief(secrets: frozenset[str], recorded: Mapping[str, Any]) -> str:
    """A short text of `recorded` for the task's shown arguments, cheap enough for the trigger
    path (no validation): a secret parameter (`Parameters.secrets`) masked; an object or list
    shown as `{…}` or `[…]`, since a nested model may hold a secret; each value cut at
    `VALUE_CHARS`, the whole at `SHOWN_CHARS`."""
    parts = []
    for key, value in recorded.items():
        if key in secrets:
            text = repr(MASK)
        elif isinstance(value, Mapping):
            text = "{…}"
        elif isinstance(value, list | tuple):
            text = "[…]"
        else:
            text = repr(value)
            if len(text) > VALUE_CHARS:
                text = text[: VALUE_CHARS - 1] + "…"
        parts.append(f"{str(key)[:VALUE_CHARS]!r}: {text}")
    shown = "{" + ", ".join(parts) + "}"
    return shown if len(shown) <= SHOWN_CHARS else shown[: SHOWN_CHARS - 2] + "…}"


def remember(execution_id: str, secrets: frozenset[str], recorded: Mapping[str, Any]) -> None:
    """Keep the brief text of a run's parameters until its dispatch takes it (`take`)."""
    if len(_waiting) >= MAX_WAITING:
        _waiting.clear()
    _waiting[execution_id] = brief(secrets, recorded)


def take(execution_id: str) -> str | None:
    """The brief text `remember` kept for this run, once; None when there is none (a run
    recorded by another process, sent again by the housekeeper)."""
    return _waiting.pop(execution_id, None)
