"""The audit trail: every operator action (enable, disable, schedule, limit, backfill, rerun,
cancel, token create and revoke) recorded with who, when and what (`ExecutionStore.actions`
lists them). A failure to record is logged, never raised: the action itself was taken."""

from __future__ import annotations

import getpass
import logging
from typing import Any

from procexec.engine.store.base import Action, ExecutionStore
from procexec.engine.timeutil import iso_ms

logger = logging.getLogger(__name__)

#: the actions the trail records
ACTIONS = (
    "enable",
    "disable",
    "schedule",
    "limit",
    "backfill",
    "rerun",
    "cancel",
    "token-create",
    "token-revoke",
)


def record(store: ExecutionStore, who: str, action: str, target: str, **details: Any) -> None:
    """Add `action` by `who` on `target` to the trail, now."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    try:
        store.record_action(Action(iso_ms(), who, action, target, details))
    except Exception:  # the action stands; its record is lost, and said so
        logger.exception("recording %s of %s by %s in the audit trail failed", action, target, who)


def command_user() -> str:
    """Who runs a command on the store directly (`cli:<the OS user>`)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment
        return "cli:unknown"
