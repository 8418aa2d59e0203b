"""`procexec token create | list | revoke`, and the one admin token `procexec standalone` keeps
in its data folder (`standalone_token`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from procexec.engine import audit
from procexec.engine.domain import Scope
from procexec.engine.errors import ProcexecError
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore, TokenRecord
from procexec.engine.timeutil import iso_ms
from procexec.engine.tokens import (
    CACHE_SECONDS,
    TokenError,
    create_token,
    hash_token,
    parse_expires,
    refusal,
    revoke,
    verify_token,
)
from procexec.preflight import USAGE, fail

#: the file in the data folder that holds `procexec standalone`'s admin token
ADMIN_TOKEN_FILE = "admin-token"


def _store() -> ExecutionStore:
    from procexec.service import existing_store

    return existing_store(Settings.from_env())


def _check_processes(names: list[str]) -> None:
    """Refuse `--process` names the service does not know (a typo would give a token that
    reads nothing)."""
    if not names:
        return
    from procexec.preflight import processes

    known = {process.name for process in processes(Settings.from_env())}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise TokenError(
            f"--process: unknown process(es) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        expires = None if args.expires is None else parse_expires(args.expires)
        _check_processes(args.process)
        store = _store()
        token = create_token(
            store,
            args.user,
            args.scope,
            expires=expires,
            environments=args.environment,
            processes=args.process,
        )
    except (ValueError, ProcexecError) as exc:
        return fail(exc, USAGE)
    details = {
        "scope": str(args.scope),
        "environments": args.environment,
        "processes": args.process,
    }
    audit.record(store, audit.command_user(), "token-create", args.user, **details)
    print(token)
    return 0


def describe(record: TokenRecord, moment: str | None = None) -> dict[str, Any]:
    """A token as `token list` shows it: never its text, nor its whole hash."""
    return {
        "id": record.id,
        "user": record.user,
        "scope": record.scope,
        "state": refusal(record, moment) or "active",
        "created": record.created,
        "expires": record.expires,
        "revoked": record.revoked,
        "environments": list(record.environments),
        "processes": list(record.processes),
    }


def cmd_token_list(args: argparse.Namespace) -> int:
    try:
        records = _store().token_records()
    except ProcexecError as exc:
        return fail(exc, USAGE)
    moment = iso_ms()
    items = [describe(record, moment) for record in records]
    if not args.all:
        items = [item for item in items if item["state"] == "active"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    columns = ("id", "user", "scope", "state", "created", "expires", "environments", "processes")
    rows = [[_cell(item[column]) for column in columns] for item in items]
    widths = [
        max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)
    ]
    for row in [[column.upper() for column in columns], *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value) or "any"
    return "-" if value is None else str(value)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    try:
        store = _store()
        record, now = revoke(store, args.token_id)
    except (ValueError, ProcexecError) as exc:
        return fail(exc, USAGE)
    if now:
        audit.record(store, audit.command_user(), "token-revoke", record.user, token=record.id)
        print(
            f"revoked {record.id} (user {record.user}, scope {record.scope}): every API "
            f"refuses it within {CACHE_SECONDS:g} s"
        )
    else:
        print(f"{record.id} (user {record.user}) was revoked already, at {record.revoked}")
    return 0


def add_token_commands(commands: Any) -> None:
    """`procexec token …` on the CLI's subcommands."""
    token = commands.add_parser("token", help="API tokens: create, list, revoke")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token; prints only the token")
    create.add_argument("--user", required=True, help="the user the token acts as (runAs)")
    create.add_argument(
        "--scope",
        default=Scope.RUN.value,
        choices=[s.value for s in Scope],
        help="read; run (trigger, cancel; and read); admin (also change processes); default run",
    )
    create.add_argument(
        "--expires",
        help="when it stops working: a length of time (30d, 12h, 90m, 2w) or an ISO date or "
        "datetime (2030-01-31, 2030-01-31T12:00Z); default never",
    )
    create.add_argument(
        "--environment",
        action="append",
        default=[],
        help="an environment it may read and run in (repeatable; default any)",
    )
    create.add_argument(
        "--process",
        action="append",
        default=[],
        help="a process whose executions it may read and run (repeatable; default any)",
    )
    create.set_defaults(handler=cmd_token_create)
    listing = token_commands.add_parser(
        "list", help="the tokens (id, user, scope, state, dates, limits; never the token)"
    )
    listing.add_argument("--all", action="store_true", help="revoked and expired ones too")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(handler=cmd_token_list)
    revoking = token_commands.add_parser(
        "revoke", help=f"revoke a token by the id 'list' shows (refused within {CACHE_SECONDS:g} s)"
    )
    revoking.add_argument("token_id", help="its id, or its first 6 or more hex digits")
    revoking.set_defaults(handler=cmd_token_revoke)


#: how many characters of a token the standalone's banner shows (`pe_` and 5 of its own)
SHOWN_CHARS = 8


def shown_token(token: str) -> str:
    """The beginning of `token`, enough to tell it from another, not to use it."""
    return token[:SHOWN_CHARS] + "…"


def standalone_token(store: ExecutionStore, data_dir: Path, user: str) -> str:
    """The admin token of `procexec standalone`: the one kept in `data_dir/admin-token` (a
    file only its owner may read) when it still works and is `user`'s; else a new one, which
    replaces it there (the old one, if it still worked, is revoked: nothing else holds it)."""
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        record = verify_token(store, kept)
        if record is not None and record.user == user and record.scope == Scope.ADMIN.value:
            path.chmod(0o600)
            return kept
        if record is not None:
            store.revoke_token(hash_token(kept), iso_ms())
    token = create_token(store, user, Scope.ADMIN)
    _write_private(path, token + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    """Write `path` whole, readable by its owner alone from its first byte."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask, or a leftover file's mode
        os.write(descriptor, text.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, path)
