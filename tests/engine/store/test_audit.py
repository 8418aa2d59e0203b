"""The audit trail on every store (SQLite, and MongoDB or its stand-in): actions kept as
recorded, listed newest first, filtered by time, kind and target, bounded by a limit."""

from __future__ import annotations

import pytest

from procexec.engine import audit
from procexec.engine.store.base import Action, ExecutionStore


def test_actions_are_listed_newest_first_and_filtered(store: ExecutionStore) -> None:
    recorded = [
        Action("2026-01-01T00:00:00.000Z", "alice", "disable", "ECB_FX", {}),
        Action("2026-01-02T00:00:00.000Z", "bob", "schedule", "ECB_FX", {"schedule": "0 1 * * *"}),
        Action("2026-01-03T00:00:00.000Z", "alice", "cancel", "run-1", {"reason": "stuck"}),
    ]
    for action in recorded:
        store.record_action(action)
    assert store.actions() == recorded[::-1]
    assert store.actions(since="2026-01-02T00:00:00.000Z") == recorded[:0:-1]
    assert store.actions(action="cancel") == [recorded[2]]
    assert store.actions(target="ECB_FX") == [recorded[1], recorded[0]]
    assert store.actions(limit=1) == [recorded[2]]
    assert store.actions(action="rerun") == []


def test_record_stamps_the_action_now_and_refuses_unknown_kinds(store: ExecutionStore) -> None:
    audit.record(store, "carol", "limit", "DEMO", limit=2)
    (action,) = store.actions()
    assert (action.who, action.action, action.target, dict(action.details)) == (
        "carol",
        "limit",
        "DEMO",
        {"limit": 2},
    )
    assert action.at.endswith("Z") and len(action.at) == 24
    with pytest.raises(ValueError, match="unknown audit action 'reboot'"):
        audit.record(store, "carol", "reboot", "DEMO")
