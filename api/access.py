"""What a caller's token lets it see of the executions: its environments and processes
(`TokenRecord.environments`, `.processes`; a list call applies them through
`engine.tokens.restrict`), and the answer of a call that reads one execution (`read_one`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, get_args

from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from procexec.api import listing
from procexec.api.auth import permit
from procexec.api.deps import ServiceState
from procexec.engine import shown_parameters
from procexec.engine.answers import answer_limit
from procexec.engine.errors import NotFound, excerpt
from procexec.engine.query import parse_document_params, project_document
from procexec.engine.store.base import TokenRecord
from procexec.engine.tokens import allows_process

#: the source segments of the platform's URLs; executions are always the tenant's private data
Source = Literal["private", "public", "all"]
SOURCES = frozenset(get_args(Source))


class SourceConvertor(StringConvertor):
    """A path segment that is a source: `v1/{source}/{id}` is routed for those three alone, so
    that `v1/<id>/cancel` is the cancel's path only (a GET there is a 405 naming POST)."""

    regex = "|".join(sorted(SOURCES))


register_url_convertor("source", SourceConvertor())


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


def read_one(
    state: ServiceState,
    environment: str,
    caller: TokenRecord,
    execution_id: str,
    params: Iterable[tuple[str, str]],
    accept: str | None,
    source: str = "private",
) -> Response:
    """The answer of `v1/{id}` and `v1/{source}/{id}`: one execution the caller may read,
    projected as `_project` asks (the one option of a single document,
    `engine.query.parse_document_params`: any other parameter is a 400 as on the list call),
    in the format `accept` asks for. Nothing is public: `public/{id}` is a 404. `_params=true`
    adds the run's parameters, secrets masked (`engine.shown_parameters`)."""
    params, with_parameters = shown_parameters.asked(params)
    project, exclude = parse_document_params(params)
    fmt = listing.response_format(accept)
    if source == "public":
        raise NotFound(f"no public execution '{excerpt(execution_id)}'")
    # the stored document over the answer's limit is refused before it is parsed
    with answer_limit(state.settings.max_answer_bytes):
        doc = visible(state, environment, execution_id, caller)
        recorded = (
            shown_parameters.shown_parameters(state.store, state.registry, doc)
            if with_parameters
            else None
        )
        doc = project_document(doc, project, exclude)
        if recorded is not None:
            doc = {**doc, shown_parameters.FIELD: recorded}
        return listing.document_response(doc, fmt, project, exclude)
