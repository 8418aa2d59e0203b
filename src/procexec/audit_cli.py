"""`procexec audit`: the audit trail (`engine.audit`) of the service's store, newest first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from procexec.engine.audit import ACTIONS
from procexec.engine.audit_trail import DEFAULT_LIMIT, MAX_LIMIT
from procexec.preflight import USAGE, fail

#: the table's columns
COLUMNS = ("at", "who", "action", "target", "details")
#: what the command calls each filter, in its errors
OPTION_NAMES = {"since": "--since", "action": "--action", "target": "--target", "limit": "--limit"}


def add_audit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = (
        "the audit trail: operators' actions (enable, disable, schedule, limit, backfill, "
        "rerun, cancel, token create and revoke) with when, who and what, newest first"
    )
    sub = commands.add_parser("audit", help=help_text, description=help_text)
    sub.add_argument(
        "--since", metavar="TIME", help="actions at or after this ISO 8601 time (no offset: UTC)"
    )
    sub.add_argument("--action", choices=ACTIONS, help="actions of this kind only")
    sub.add_argument("--target", help="actions on this process, execution id or user only")
    sub.add_argument(
        "--limit",
        default=str(DEFAULT_LIMIT),
        metavar="N",
        help=f"the most actions listed (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
    )
    sub.add_argument("--json", action="store_true", help="as JSON")
    sub.set_defaults(handler=cmd_audit)


def _details(details: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in details.items()
    )


def cmd_audit(args: argparse.Namespace) -> int:
    from procexec.engine.audit_trail import listed, trail_query
    from procexec.engine.errors import ProcexecError
    from procexec.engine.settings import Settings
    from procexec.service import existing_store

    try:
        query = trail_query(args.since, args.action, args.target, args.limit, OPTION_NAMES)
        store = existing_store(Settings.from_env())
        try:
            items = listed(store, query)
        finally:
            store.close()
    except ProcexecError as exc:
        return fail(exc, USAGE)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    rows = [[str(item[column]) for column in COLUMNS[:-1]] for item in items]
    for row, item in zip(rows, items, strict=True):
        row.append(_details(item["details"]))
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(COLUMNS[:-1])]
    for row in [[column.upper() for column in COLUMNS], *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, *row[len(widths) :]]).rstrip())
    return 0
