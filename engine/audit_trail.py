"""Reading the audit trail (`engine.audit`): which actions a listing asks for, checked, and each
action as `procexec audit --json` and `GET /service/audit/v1` show it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from procexec.engine.audit import ACTIONS
from procexec.engine.errors import BadRequest, excerpt
from procexec.engine.store.base import Action, ExecutionStore
from procexec.engine.timeutil import iso_ms, parse_iso

#: the actions a listing gives unless told, and the most it gives
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: what the API calls each filter (the command's options are `--since` …)
API_NAMES = {"since": "since", "action": "action", "target": "target", "limit": "_limit"}


@dataclass(frozen=True)
class TrailQuery:
    """Actions at or after `since` (ISO UTC, milliseconds), of one kind, on one target, newest
    first, at most `limit` of them."""

    since: str | None = None
    action: str | None = None
    target: str | None = None
    limit: int = DEFAULT_LIMIT


def trail_query(
    since: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: str | int | None = None,
    names: Mapping[str, str] = API_NAMES,
) -> TrailQuery:
    """The listing asked for; a `BadRequest` naming the parameter (as `names` calls it) that is
    wrong: a time that is not ISO 8601 (without an offset, UTC), an unknown action, a limit
    that is not a whole number from 1 to `MAX_LIMIT`."""
    moment = None
    if since is not None:
        try:
            moment = iso_ms(parse_iso(since.strip()))
        except (ValueError, OverflowError):
            raise BadRequest(
                f"{names['since']}: '{excerpt(since)}' is not an ISO 8601 time, such as "
                "2021-07-01T00:00:00Z"
            ) from None
    if action is not None and action not in ACTIONS:
        raise BadRequest(
            f"{names['action']}: unknown action '{excerpt(action)}' (actions: {', '.join(ACTIONS)})"
        )
    count = DEFAULT_LIMIT
    if limit is not None:
        text = str(limit).strip()
        whole = text.isascii() and text.isdigit() and len(text) <= 6
        count = int(text) if whole else 0
        if not 1 <= count <= MAX_LIMIT:
            raise BadRequest(
                f"{names['limit']}: '{excerpt(limit)}' is not a whole number from 1 to {MAX_LIMIT}"
            )
    return TrailQuery(moment, action, target, count)


def describe(action: Action) -> dict[str, Any]:
    """One action as a listing shows it."""
    return {
        "at": action.at,
        "who": action.who,
        "action": action.action,
        "target": action.target,
        "details": dict(action.details),
    }


def listed(store: ExecutionStore, query: TrailQuery) -> list[dict[str, Any]]:
    """The actions `query` asks for, newest first."""
    found = store.actions(
        since=query.since, action=query.action, target=query.target, limit=query.limit
    )
    return [describe(action) for action in found]
