"""Listing the audit trail on real stores (SQLite files; MongoDB or mongomock): the filters,
the bounds and the errors naming the parameter."""

from __future__ import annotations

import pytest

from procexec.engine.audit_trail import MAX_LIMIT, TrailQuery, listed, trail_query
from procexec.engine.errors import BadRequest
from procexec.engine.store.base import Action, ExecutionStore

ACTIONS = [
    Action("2021-07-01T10:00:00.000Z", "root", "enable", "DEMO"),
    Action("2021-07-01T11:00:00.000Z", "cli:ops", "backfill", "ECB_FX", {"made": 24}),
    Action("2021-07-02T09:00:00.000Z", "root", "disable", "DEMO"),
]


@pytest.fixture
def trail(store: ExecutionStore) -> ExecutionStore:
    for action in ACTIONS:
        store.record_action(action)
    return store


def actions(store: ExecutionStore, **given: str) -> list[tuple[str, str]]:
    return [(item["action"], item["target"]) for item in listed(store, trail_query(**given))]


def test_listed_newest_first_and_filtered(trail: ExecutionStore) -> None:
    assert actions(trail) == [("disable", "DEMO"), ("backfill", "ECB_FX"), ("enable", "DEMO")]
    assert actions(trail, since="2021-07-01T10:30") == actions(trail)[:2]
    assert actions(trail, since="2021-07-01T12:30+02:00") == actions(trail)[:2]
    assert actions(trail, action="enable") == [("enable", "DEMO")]
    assert actions(trail, target="DEMO", limit="1") == [("disable", "DEMO")]
    assert listed(trail, trail_query(action="backfill"))[0] == {
        "at": "2021-07-01T11:00:00.000Z",
        "who": "cli:ops",
        "action": "backfill",
        "target": "ECB_FX",
        "details": {"made": 24},
    }


def test_the_query_and_its_bounds() -> None:
    assert trail_query() == TrailQuery(None, None, None, 100)
    assert trail_query(since="2021-07-01", limit=str(MAX_LIMIT)) == TrailQuery(
        "2021-07-01T00:00:00.000Z", None, None, MAX_LIMIT
    )
    for limit in ("0", "1001", "1.5", "x", "-3", "\uff11"):
        with pytest.raises(BadRequest, match=r"^_limit: .* is not a whole number from 1 to 1000$"):
            trail_query(limit=limit)
    with pytest.raises(BadRequest, match=r"^--since: 'soon' is not an ISO 8601 time"):
        trail_query(since="soon", names={"since": "--since"})
    with pytest.raises(BadRequest, match=r"^action: unknown action 'boot' \(actions: enable, "):
        trail_query(action="boot")
