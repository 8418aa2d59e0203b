"""`procexec process limit NAME N|none|default`: how many runs of a process may run at once,
kept in the store (`engine.concurrency.change_limit`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from procexec.engine.audit import command_user
from procexec.engine.concurrency import change_limit

if TYPE_CHECKING:
    from procexec.engine.process import ProcessRegistry
    from procexec.engine.store.base import ExecutionStore

#: the words the command takes beside a number: no limit, and the definition's
NO_LIMIT, DEFAULT = "none", "default"


def _limit(text: str) -> int | None:
    """A number of runs (1 or more), `none` (0: no limit) or `default` (None)."""
    word = text.strip().lower()
    if word == NO_LIMIT:
        return 0
    if word == DEFAULT:
        return None
    if not word.isdigit() or int(word) < 1:
        raise argparse.ArgumentTypeError(
            f"'{text}' is neither a number of runs (1 or more) nor {NO_LIMIT} or {DEFAULT}"
        )
    return int(word)


def add_limit_command(process_commands: argparse._SubParsersAction) -> None:
    limit = process_commands.add_parser(
        "limit",
        help="how many runs of a process may run at once, across every worker: N, none (no "
        "limit) or default (its definition's max_running)",
    )
    limit.add_argument("name")
    limit.add_argument("limit", type=_limit, help="N (1 or more), none or default")


def limit_process(
    store: ExecutionStore, registry: ProcessRegistry, name: str, limit: int | None
) -> int:
    """Set the limit; prints the one that now holds. Errors are the caller's to tell."""
    holds = change_limit(store, registry, name, limit, who=command_user())
    process = registry.get(name)
    key = f" per {process.limit_key}" if process is not None and process.limit_key else ""
    said = "no limit" if holds is None else f"max_running {holds}{key}"
    print(f"{name}: {said}{' (its definition)' if limit is None else ''}")
    return 0
