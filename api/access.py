"""What a caller's token lets it see of the executions: its environments and processes
(`TokenRecord.environments`, `.processes`; a list call applies them through
`engine.tokens.restrict`)."""

from __future__ import annotations

from typing import Any

from procexec.api.auth import permit
from procexec.api.deps import ServiceState
from procexec.engine.errors import NotFound, excerpt
from procexec.engine.store.base import TokenRecord
from procexec.engine.tokens import allows_process


def visible(
    state: ServiceState, environment: str, execution_id: str, caller: TokenRecord
) -> dict[str, Any]:
    """One execution the caller may read (in one of its environments, of one of its
    processes), under the API's read limit; a 403 for an environment the token may not read,
    a 404 when the execution is not there or of a process the token may not read."""
    permit(caller, environment)
    with state.store.limited(state.settings.read_timeout):
        doc = state.store.get(execution_id, environment)
    if doc is None or not allows_process(caller, str(doc.get("name"))):
        raise NotFound(f"no execution '{excerpt(execution_id)}' in environment '{environment}'")
    return doc
